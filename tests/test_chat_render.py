"""What `orchestrator chat` prints of a turn is text, never terminal control: a reply (or a
transcript) that carries escape sequences shows them as harmless characters."""

from __future__ import annotations

import io

from rich.console import Console

from chat.render import TurnView, printable

#: Clear the screen, set the window title, write the clipboard (OSC 52), ring the bell.
HOSTILE = "ok\x1b[2J\x1b]0;pwned\x07\x1b]52;c;ZWNobyBoaQ==\x07\x9b31m done\r\x08!"


def _shown(events: list[tuple[str, dict[str, object]]]) -> str:
    out = io.StringIO()
    view = TurnView(Console(file=out, force_terminal=True, color_system=None, width=200))
    for number, (kind, data) in enumerate(events):
        view.event(kind, f"1-{number}", data)
    return out.getvalue()


def test_control_characters_are_dropped_newline_and_tab_kept() -> None:
    assert printable(HOSTILE) == "ok[2J]0;pwned]52;c;ZWNobyBoaQ==31m done!"
    assert printable("line one\n\tline two") == "line one\n\tline two"


def test_a_streamed_reply_and_a_refusal_print_no_control_characters() -> None:
    shown = _shown(
        [
            ("turn.accepted", {"turn": 1}),
            ("token", {"index": 0, "delta": HOSTILE}),
            ("turn.refused", {"turn": 1, "reply": HOSTILE, "verdict": {"stage": "output"}}),
        ]
    )
    assert "pwned" in shown  # the text stays readable
    # rich's own styling uses ESC [ ... m; nothing else of the kind may reach the terminal.
    stripped = shown.replace("\x1b[0m", "").replace("\x1b[1m", "")
    assert not any(c in stripped for c in "\x07\x08\r\x9b"), repr(shown)
    assert "\x1b]" not in shown and "\x1b[2J" not in shown
