"""A streamed reply, checked as it grows.

While a reply streams, it is checked on windows of the growing text: each time the text
has grown by `WINDOW_STEP_CHARS`, the last `WINDOW_CHARS` characters, up to and including
the newest delta, go through the cheap layers (normalisation and rules) before that delta is
appended; where a sentence ends, at least `SENTENCE_STEP_CHARS` after the last such check,
the window goes through the classifier too. A refused window stops the call at once (its
last delta is never sent); the workflow then writes `retract` and `turn.refused`. So a
client sees at most one step of text a rule refuses, or one sentence the classifier
refuses, before the `retract`. The whole reply is still checked once complete, through
every layer (guard models included), so nothing wider than a window slips by.
"""

from __future__ import annotations

import re

from core.moderation.moderator import Moderator
from core.moderation.verdict import Verdict

#: Streamed output is checked each time it grew by this much: about eight tokens. A check
#: of a full window costs about 0.45 ms here, too much to pay on every token of every stream.
WINDOW_STEP_CHARS = 32
#: The text each check reads: far wider than a step plus any rule of the bundled policy
#: (their gaps are at most 40 characters), so a phrase split across steps is still caught.
WINDOW_CHARS = 512
#: The classifier reads a window where a sentence ends, at most once per this much growth:
#: one read costs a few milliseconds of worker CPU (on a thread, off the event loop).
SENTENCE_STEP_CHARS = 96
_SENTENCE_END = re.compile(r"[.!?;:\n]")


class CheckedReply:
    """A streamed reply as it grows, checked on windows (see the module's docstring)."""

    def __init__(self, moderator: Moderator) -> None:
        self._moderator = moderator
        self.parts: list[str] = []
        self._text = ""
        self._checked = 0  # how much of the text a window check has read
        self._classified = 0  # ... and the classifier
        self._classify = moderator.engine.classifies("output")

    async def add(self, delta: str) -> Verdict | None:
        """Take the next delta; the refusal of the window it completes, if refused."""
        self.parts.append(delta)
        self._text += delta
        grown = len(self._text) - self._classified
        if self._classify and _SENTENCE_END.search(delta) and grown >= SENTENCE_STEP_CHARS:
            self._checked = self._classified = len(self._text)
            return await self._moderator.check_sentence(self._text[-WINDOW_CHARS:])
        if len(self._text) - self._checked < WINDOW_STEP_CHARS:
            return None
        self._checked = len(self._text)
        return self._moderator.check_window(self._text[-WINDOW_CHARS:])
