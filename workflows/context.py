"""What the SLM sees of a conversation: the system prompt, recent exchanges, the new message."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.slm import ChatMessage
    from workflows.turns import TurnRecord

SYSTEM_PROMPT = "You are a helpful, concise assistant."


def recent_context(turns: list[TurnRecord], message: str, token_budget: int) -> list[ChatMessage]:
    """The most recent completed exchanges that fit `token_budget`, oldest first."""
    budget = token_budget - _tokens(SYSTEM_PROMPT) - _tokens(message)
    history: list[ChatMessage] = []
    for record in reversed(turns):
        if record.status != "completed":
            continue  # a refusal or a failure is not something the model said
        cost = _tokens(record.message) + _tokens(record.reply)
        if cost > budget:
            break
        budget -= cost
        history[:0] = [ChatMessage("user", record.message), ChatMessage("assistant", record.reply)]
    return [ChatMessage("system", SYSTEM_PROMPT), *history, ChatMessage("user", message)]


def _tokens(text: str) -> int:
    # About four characters a token for English; the budget is a bound, not a bill.
    return len(text) // 4 + 4
