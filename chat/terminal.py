"""The terminal chat: read a line, stream the turn it starts, or run a `/command`.

Ctrl-C while a turn streams cancels the turn (a `cancel` on the WebSocket, the cancel
route's update), not the program; a second Ctrl-C stops waiting for it. Ctrl-C or Ctrl-D at
the prompt, or `/quit`, ends the chat.
"""

from __future__ import annotations

import functools
import signal
import uuid
from collections.abc import Callable
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from chat.connection import ApiError, ChatApi, ConnectionLost
from chat.render import TurnView, printable
from chat.target import ChatError

HELP = """\
[bold]/new[/]                       start a new session
[bold]/history[/]                   the session's turns
[bold]/feedback N +1|-1 \\[text][/]   rate turn N (up or down), with an optional comment
[bold]/help[/]                      this list
[bold]/quit[/]                      leave (Ctrl-D or Ctrl-C at the prompt too)
Anything else is a message. Ctrl-C while a reply streams cancels that turn."""
_RATINGS = {"+1": 1, "1": 1, "up": 1, "-1": -1, "down": -1}
#: How long one wait for the socket lasts, so Ctrl-C is seen between two waits.
_POLL_SECONDS = 0.2
_RECONNECTS = 3


def new_session_id() -> str:
    return f"chat-{uuid.uuid4().hex[:12]}"


class Chat:
    def __init__(self, api: ChatApi, console: Console, session_id: str | None) -> None:
        self._api = api
        self._console = console
        self.session_id = session_id or new_session_id()

    def run(self) -> None:
        me = self._api.whoami()
        self._console.print(
            f"Connected to {escape(self._api.api_url)} as [bold]{escape(me['subject'])}[/] "
            f"(tenant {escape(me['tenant'])}). /help lists the commands."
        )
        self._announce_session()
        while True:
            try:
                line = self._console.input("[bold cyan]you>[/] ").strip()
            except (EOFError, KeyboardInterrupt):
                self._console.print()
                return
            if not line:
                continue
            if line.startswith("/"):
                if not self._command(line):
                    return
            else:
                self._guarded(functools.partial(self._turn, line))

    def _transcript(self) -> dict[str, Any] | None:
        """The session's latest turns; None while it has none (it starts with its first)."""
        try:
            return self._api.transcript(self.session_id)
        except ApiError as error:
            if error.status != 404:
                raise
            return None

    def _announce_session(self) -> None:
        view = self._transcript()
        if view is None:
            self._console.print(f"Session [bold]{self.session_id}[/]: new.")
            return
        self._console.print(
            f"Session [bold]{self.session_id}[/]: {view['turn_count']} turns, "
            f"{view['status']}. /history shows them."
        )

    def _guarded(self, action: Callable[[], None]) -> None:
        """Run `action`; a refusal by the API, or the API out of reach, is shown, and the
        chat goes on."""
        try:
            action()
        except ApiError as error:
            self._console.print(
                f"[bold red]error {error.status}:[/] {escape(printable(str(error)))}"
            )
        except (ChatError, ConnectionLost) as error:  # the API went away: it may come back
            self._console.print(
                f"[bold red]error:[/] {escape(printable(str(error)) or 'connection lost')}"
            )

    def _command(self, line: str) -> bool:
        """Run a command; False ends the chat."""
        name, _, rest = line.partition(" ")
        if name == "/quit":
            return False
        if name == "/help":
            self._console.print(HELP)
        elif name == "/new":
            self.session_id = new_session_id()
            self._console.print(f"Session [bold]{self.session_id}[/]: new.")
        elif name == "/history":
            self._guarded(self._history)
        elif name == "/feedback":
            self._guarded(lambda: self._feedback(rest.split(maxsplit=2)))
        else:
            self._console.print(f"Unknown command {escape(name)}; /help lists them.")
        return True

    def _history(self) -> None:
        view = self._transcript()
        if view is None:
            self._console.print("No turns yet in this session.")
            return
        table = Table("turn", "status", "you", "slm", title=f"session {self.session_id}")
        for turn in view["turns"]:
            table.add_row(
                str(turn["turn"]), turn["status"], _short(turn["message"]), _short(turn["reply"])
            )
        self._console.print(table)

    def _feedback(self, words: list[str]) -> None:
        if len(words) < 2 or not words[0].isdigit() or words[1] not in _RATINGS:
            self._console.print(
                "Usage: /feedback N +1|-1 [comment], e.g. /feedback 2 +1 clear", markup=False
            )
            return
        turn, rating = int(words[0]), _RATINGS[words[1]]
        self._api.feedback(self.session_id, turn, rating, words[2] if len(words) > 2 else "")
        self._console.print(f"Feedback on turn {turn} taken ({words[1]}).")

    def _turn(self, message: str) -> None:
        """Start a turn and show its events until its final one (or a second Ctrl-C)."""
        view = TurnView(self._console)
        interrupts = 0

        def interrupted(signum: int, frame: FrameType | None) -> None:
            nonlocal interrupts
            interrupts += 1

        previous = signal.signal(signal.SIGINT, interrupted)
        try:
            self._api.send(
                {"type": "turn", "session_id": self.session_id, "message": message, "ref": "turn"}
            )
            cancel_sent = False
            while not view.ended:
                if interrupts and view.turn is not None and not cancel_sent:
                    self._api.send(
                        {
                            "type": "cancel",
                            "session_id": self.session_id,
                            "turn": view.turn,
                            "ref": "cancel",
                        }
                    )
                    view.cancelling()
                    cancel_sent = True
                if interrupts > 1:
                    view.note("stopped waiting; the turn is cancelled on the server")
                    return
                received = self._receive(view)
                if received is not None:
                    self._show(view, received)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _receive(self, view: TurnView) -> dict[str, Any] | None:
        """The next message; after a lost connection, a new one resumes the turn."""
        for attempt in range(_RECONNECTS + 1):
            try:
                return self._api.receive(_POLL_SECONDS)
            except ConnectionLost:
                if view.turn is None or attempt == _RECONNECTS:
                    raise ApiError(
                        {"status": 503, "detail": "the connection to the API was lost"}
                    ) from None
                view.note("connection lost; resuming ...")
                resume = {
                    "type": "resume",
                    "session_id": self.session_id,
                    "turn": view.turn,
                    "last_event_id": view.last_id,
                }
                self._api.send(resume)
        return None

    def _show(self, view: TurnView, received: dict[str, Any]) -> None:
        problem = received.get("problem")
        if problem is None:
            view.event(received["type"], received["id"], received["data"])
        elif received.get("ref") == "cancel":  # e.g. the turn had already ended
            view.note(f"could not cancel: {problem.get('detail', '')}")
        else:  # the turn was refused before it started, or its relay broke off
            view.failed(problem)


def _short(text: str, limit: int = 160) -> str:
    """A cell of the history: printable, shortened, its brackets shown as written."""
    text = printable(text)
    return escape(text if len(text) <= limit else text[: limit - 3] + "...")
