"""No cheap request stalls the API: every message of every route is capped, and personal
data is looked for off the event loop, so liveness answers while the largest request the
API takes is redacted (its cost, linear in the text: `python -m bench pii`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tests.helpers.auth import bearer

#: Texts that made a redaction pattern backtrack over the whole text, each at most 8000
#: characters (the cap of one message).
_HOSTILE = ["a." * 4000, "(555) " * 1333, "1." * 4000, "1 " * 4000, "a:" * 4000, "x@y." * 2000]


async def test_an_earlier_message_past_the_cap_is_refused_naming_it(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    body = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [
            {"role": "user", "content": "a." * 4001},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "hello"},
        ],
    }
    refused = await api.post("/v1/chat/completions", json=body, headers=bearer(token))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["param"] == "messages[0].content"
    assert "at most 8000 characters" in error["message"]


async def test_liveness_answers_while_the_largest_messages_are_redacted(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    earlier = []
    for text in _HOSTILE:  # as much as the body limit (64 KiB) lets one request hold
        earlier += [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]
    largest = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [*earlier, {"role": "user", "content": "Say hi."}],
        "max_tokens": 4,
    }
    # One earlier message of 60 000 characters held the loop for seconds before the cap.
    over_the_cap = {
        **largest,
        "messages": [{"role": "user", "content": "a." * 30000}, *largest["messages"][-1:]],
    }
    sent = [
        asyncio.create_task(
            api.post("/v1/chat/completions", json=body, headers=bearer(token), timeout=120)
        )
        for body in (largest, over_the_cap)
    ]
    async with httpx.AsyncClient(base_url=str(api.base_url), timeout=5) as probe:
        while not all(task.done() for task in sent):
            # The loop is free: a probe is answered at once, not after the redaction.
            assert (await probe.get("/healthz")).status_code == 200
            await asyncio.sleep(0.02)
    answered, refused = [await task for task in sent]
    assert answered.status_code == 200, answered.text
    assert refused.status_code == 400, refused.text
