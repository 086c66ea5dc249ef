"""How one turn looks in the terminal, event by event (the events of docs/api.md, Streaming).

The reply streams as its tokens come. What the policy refuses, what is taken back
(`retract`) and how a turn ended other than completed are each said on a line of their
own, labelled and coloured, so a refusal never reads as the model's answer.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.markup import escape

#: C0 and C1 control characters but newline and tab, and DEL: what a terminal would act on.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` without the control characters a terminal would act on (an escape sequence in
    a reply or a transcript could otherwise move the cursor, recolour, retitle the window,
    or write into the clipboard): they are dropped, newline and tab kept."""
    return _CONTROL.sub("", text)


#: Events after which a turn has nothing more to send.
FINAL_EVENTS = frozenset({"turn.completed", "turn.refused", "turn.cancelled", "error"})


class TurnView:
    def __init__(self, console: Console) -> None:
        self._console = console
        self.turn: int | None = None
        self.last_id: str | None = None
        self.ended = False
        self._mid_line = False  # the cursor is after the label or the reply's text
        self._text_shown = False
        self._cancelling = False

    def event(self, kind: str, event_id: str, data: dict[str, Any]) -> None:
        self.last_id = event_id
        if kind == "turn.accepted":
            self.turn = int(data["turn"])
            self._label("[bold green]slm>[/] ")
        elif kind == "token":
            if self._cancelling:  # a cancelled turn keeps no reply: its last tokens are moot
                return
            delta = printable(str(data["delta"]))
            self._console.print(delta, end="", markup=False, highlight=False)
            self._mid_line = self._text_shown = True
        elif kind == "retract":
            why = "the policy refused it" if data.get("reason") == "moderation" else "retried"
            self.note(f"[retracted: {why}; the text above is withdrawn]", style="bold yellow")
            if data.get("reason") != "moderation":
                self._label("[bold green]slm>[/] ")
        elif kind in FINAL_EVENTS:
            self._final(kind, data)
        # `verdict` opens every turn; a refusal's is shown with its final event.

    def _final(self, kind: str, data: dict[str, Any]) -> None:
        self.ended = True
        if kind == "turn.completed":
            usage = data.get("usage", {})
            self.note(
                f"turn {data['turn']} completed, {usage.get('completion_tokens', 0)} tokens",
                style="dim",
            )
        elif kind == "turn.refused":
            verdict = data.get("verdict", {})
            where = ", ".join(str(v) for v in (verdict.get("stage"), verdict.get("category")) if v)
            self.note(f"[refused: {where}] {data.get('reply', '')}", style="bold red")
        elif kind == "turn.cancelled":
            self.note(f"[cancelled] turn {data['turn']}", style="bold yellow")
        else:  # the turn failed: its problem
            self.failed(data)

    def cancelling(self) -> None:
        self._cancelling = True
        self.note("cancelling ...")

    def failed(self, problem: dict[str, Any]) -> None:
        self.ended = True
        status = problem.get("status", "")
        self.note(f"[error {status}] {problem.get('detail', '')}", style="bold red")

    def note(self, text: str, style: str = "yellow") -> None:
        """A line of its own after the reply streamed so far (beside the label if none was)."""
        if self._mid_line and self._text_shown:
            self._console.print()
        self._mid_line = self._text_shown = False
        self._console.print(escape(printable(text)), style=style, highlight=False)

    def _label(self, markup: str) -> None:
        self._console.print(markup, end="")
        self._mid_line = True
