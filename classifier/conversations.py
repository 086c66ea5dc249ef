"""Conversations: the labelled set in `data/conversations/`, what training learns from it, and
replaying one through the engine as a session's turns would be checked.

Each line is a conversation of 2 to 6 user turns with the assistant's replies between them
(see `data/README.md`): benign, hard benign, or harmful from its `harm_turn` on (the user
turn at which a careful moderator who has read everything so far would refuse).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from classifier.dataset import DATA, Example
from core.moderation.engine import Engine
from core.moderation.finding import Finding

CONVERSATIONS = DATA / "conversations"
#: Kinds whose later user turns carry no content of their own: what the follow-up head
#: learns to recognise.
FOLLOW_UP_KINDS = ("content_free_followup", "context_followup", "clarification")


@dataclass(frozen=True)
class Conversation:
    id: str
    set: str  # benign, hard_benign or harmful
    kind: str
    label: str  # a policy category, or "benign"
    language: str
    harm_turn: int | None  # 1-based, among the user turns; None unless harmful
    user_turns: tuple[str, ...]

    @property
    def harmful(self) -> bool:
        return self.set == "harmful"


def load(split: str) -> list[Conversation]:
    """Every conversation of `split` ("train" or "heldout"), in file order."""
    path = CONVERSATIONS / f"{split}.jsonl"
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            turns = tuple(m["content"] for m in row["messages"] if m["role"] == "user")
            found.append(
                Conversation(
                    row["id"],
                    row["set"],
                    row["kind"],
                    row["label"],
                    row["language"],
                    row["harm_turn"],
                    turns,
                )
            )
        except (ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"{path.name}:{number}: not a conversation: {error}") from None
    return found


def joined(turns: tuple[str, ...] | list[str], last: int, context_turns: int) -> str:
    """User turn `last` (1-based) with up to `context_turns` turns before it, as the engine
    joins them (before normalisation)."""
    return "\n".join(turns[max(0, last - 1 - context_turns) : last])


def examples(
    conversations: list[Conversation], context_turns: int
) -> Iterator[tuple[str, Example]]:
    """What the heads learn from conversations, each with its conversation's id (a group for
    cross-validation): every turn alone that is innocent alone, and every turn from the
    second on joined with the turns before it, harmful from the harm turn on."""
    for c in conversations:
        for number, turn in enumerate(c.user_turns, 1):
            before_harm = not c.harmful or number < (c.harm_turn or 0)
            if before_harm:
                innocent = "hard_benign" if c.harmful else c.set
                yield c.id, Example(turn, "benign", innocent, "conversation_turn", "written-here")
            elif number == 1:  # a jailbreak set up at once, or a harm asked outright
                kind = "jailbreak" if c.kind == "late_jailbreak" else "harmful"
                label = "prompt_injection" if kind == "jailbreak" else c.label
                yield c.id, Example(turn, label, kind, "conversation_turn", "written-here")
            if number == 1:
                continue
            text = joined(c.user_turns, number, context_turns)
            if before_harm:
                yield (
                    c.id,
                    Example(
                        text,
                        "benign",
                        "hard_benign" if c.harmful else c.set,
                        "conversation_joined",
                        "written-here",
                    ),
                )
            else:
                yield c.id, Example(text, c.label, "harmful", "conversation_joined", "written-here")


def follow_ups(conversations: list[Conversation]) -> Iterator[tuple[str, str, bool]]:
    """(conversation id, user turn, whether it is a follow-up) for the follow-up head: the
    later turns of the kinds built on content-free follow-ups, and every opening turn."""
    for c in conversations:
        for number, turn in enumerate(c.user_turns, 1):
            if number == 1:
                yield c.id, turn, False
            elif c.kind in FOLLOW_UP_KINDS:
                yield c.id, turn, True
            elif c.kind == "topic_change" and number == len(c.user_turns):
                yield c.id, turn, False


@dataclass(frozen=True)
class Replay:
    """How one conversation went, turn by turn, through the engine."""

    conversation: Conversation
    #: The first refused user turn (1-based) and why; None when every turn was allowed.
    refused_at: int | None
    finding: Finding | None
    #: Seconds of each input check.
    seconds: list[float]

    @property
    def right(self) -> bool:
        """Harmful: refused at or before its harm turn; otherwise: never refused."""
        if self.conversation.harmful:
            return self.refused_at is not None and self.refused_at <= (
                self.conversation.harm_turn or 0
            )
        return self.refused_at is None


def replay(engine: Engine, conversation: Conversation) -> Replay:
    """Check each user turn as a session would (workflows/conversation/turn.py): with the answered
    turns
    before it and every turn asked before it; a harmful conversation stops at its first
    refusal, a benign one goes on (its later turns are checked too)."""
    import time

    answered: list[str] = []
    asked: list[str] = []
    first: tuple[int, Finding] | None = None
    seconds = []
    for number, turn in enumerate(conversation.user_turns, 1):
        started = time.perf_counter()
        finding = engine.check(turn, "input", answered, asked).finding
        seconds.append(time.perf_counter() - started)
        asked.append(turn)
        if finding is None:
            answered.append(turn)
        elif first is None:
            first = (number, finding)
            if conversation.harmful:
                break
    return Replay(conversation, first[0] if first else None, first[1] if first else None, seconds)
