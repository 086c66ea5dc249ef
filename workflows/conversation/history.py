"""Does the conversation a client holds agree with the session's own?

A client of the OpenAI-compatible route sends the whole conversation with each message. The
API sends a digest of each earlier message (system messages aside) with the turn; the
session compares them, under its turn lock, with what it holds: its seed, then its turns,
each answered turn a user message and the assistant's reply.

- The client may send less than the session holds (a client that trims old messages, or
  none at all): its messages must be the session's latest ones.
- A refused turn may be there (with the refusal as the reply) or not: clients differ in
  whether they keep a refused exchange. Failed and cancelled turns have no reply: absent.
- Messages older than what the session still holds (turns continue-as-new no longer
  carries, seed messages that did not fit the context) cannot be compared and pass.

Workflow code (pure and deterministic); the API computes the same digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.messages import ChatMessage
    from core.moderation.verdict import ModerationRequest
    from workflows.conversation.types import ConversationState

#: A seeded user message is checked with this many seeded user messages before it, as a
#: turn is with the session's (workflows/conversation/turn.py, MODERATION_CONTEXT_TURNS).
_SEED_CHECK_CONTEXT = 10

#: Turns whose exchange a client holds; a refused one optionally.
_ANSWERED = ("completed", "refused")


def digest(role: str, content: str) -> str:
    """One message as the comparison sees it: its role and its text, trimmed."""
    return hashlib.sha256(f"{role}\n{content.strip()}".encode()).hexdigest()[:32]


def takes_seed(state: ConversationState) -> bool:
    """No seed and no answered turn (kept or dropped): earlier messages would seed it."""
    answered = any(t.status in _ANSWERED for t in state.turns)
    return not state.seed and not answered and not state.earlier_turns


def agrees(history: Sequence[str], state: ConversationState) -> bool:
    """Are `history`'s digests the session's latest messages (see the module's rules)?"""
    left = list(history)
    for turn in reversed(state.turns):
        if not left:
            return True
        if turn.status not in _ANSWERED:
            continue
        exchange = [digest("user", turn.message), digest("assistant", turn.reply)]
        if left[-2:] == exchange:
            del left[-2:]
        elif left == exchange[1:]:  # the client's oldest message is this turn's reply
            return True
        elif turn.status == "completed":
            return False
        # A refused turn the client left out: its messages go on to the turn before.
    if not left or state.earlier_turns:
        return True
    seed = [digest(m.role, m.content) for m in state.seed]
    if len(left) <= len(seed):
        return left == seed[len(seed) - len(left) :]
    return state.seed_dropped > 0 and left[len(left) - len(seed) :] == seed


def seed_checks(seed: Sequence[ChatMessage]) -> list[ModerationRequest]:
    """The moderation of a seed: each message as if said in the session, a user's at the
    input stage (with the user messages before it), an assistant's at the output stage."""
    checks: list[ModerationRequest] = []
    said: list[str] = []
    for message in seed:
        if message.role == "user":
            checks.append(ModerationRequest(message.content, "input", said[-_SEED_CHECK_CONTEXT:]))
            said.append(message.content)
        else:
            checks.append(ModerationRequest(message.content, "output", said[-1:]))
    return checks
