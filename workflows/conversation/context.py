"""What the SLM sees of a conversation: the system prompt, recent exchanges, the new message."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.messages import ChatMessage
    from workflows.conversation.types import TurnRecord

SYSTEM_PROMPT = "You are a helpful, concise assistant."
#: A seed keeps at most this many earlier messages (each one is moderated at seeding).
SEED_MESSAGES = 64


#: Marks where a message too long for the budget was cut.
CUT = " […] "


def recent_context(
    turns: list[TurnRecord],
    message: str,
    token_budget: int,
    seed: Sequence[ChatMessage] = (),
) -> list[ChatMessage]:
    """The most recent completed exchanges that fit `token_budget`, oldest first, then the
    message; a message that alone exceeds the budget is cut in its middle (its start and
    its end are kept), so the model's context is never exceeded by what a user may send.
    The session's seed comes before its turns, as far as the budget goes."""
    budget = token_budget - _tokens(SYSTEM_PROMPT)
    message = _within(message, budget)
    budget -= _tokens(message)
    history: list[ChatMessage] = []
    for record in reversed(turns):
        if record.status != "completed":
            continue  # a refusal or a failure is not something the model said
        cost = _tokens(record.message) + _tokens(record.reply)
        if cost > budget:
            break
        budget -= cost
        history[:0] = [ChatMessage("user", record.message), ChatMessage("assistant", record.reply)]
    else:
        history[:0] = seed_within(seed, budget)
    return [ChatMessage("system", SYSTEM_PROMPT), *history, ChatMessage("user", message)]


def seed_within(seed: Sequence[ChatMessage], budget: int) -> list[ChatMessage]:
    """The latest messages of `seed` that fit `budget` estimated tokens, at most SEED_MESSAGES."""
    kept: list[ChatMessage] = []
    for message in reversed(seed[-SEED_MESSAGES:]):
        budget -= _tokens(message.content)
        if budget < 0:
            break
        kept.insert(0, ChatMessage(message.role, message.content))
    return kept


def seed_budget(message: str, token_budget: int) -> int:
    """What is left of `token_budget` for a seed, beside the system prompt and `message`."""
    budget = token_budget - _tokens(SYSTEM_PROMPT)
    return budget - _tokens(_within(message, budget))


def _tokens(text: str) -> int:
    """An estimate on the safe side: about four ASCII characters a token (English), and a
    token for every byte of any other character (a byte-level tokenizer's worst case)."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return ascii_chars // 4 + len(text.encode()) - ascii_chars + 4


def _within(text: str, budget: int) -> str:
    """`text`, or its start and its end joined by CUT, estimated at most `budget` tokens."""
    if _tokens(text) <= budget:
        return text
    low, high = 0, len(text) // 2  # characters kept at each end: the most that fit
    while low < high:
        keep = (low + high + 1) // 2
        if _tokens(text[:keep] + CUT + text[-keep:]) <= budget:
            low = keep
        else:
            high = keep - 1
    return text[:low] + CUT + text[len(text) - low :]
