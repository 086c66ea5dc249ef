"""What a message does when another turn of its session is running: `on_busy` in the body of
step and stream (and the WebSocket's `turn`), `X-On-Busy` on the OpenAI-compatible route."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from core.settings import Settings
from tests.helpers.kafka_records import records_for_key
from tests.helpers.sse import Event, events

LONG = "Write a long story about a lighthouse keeper."


def _hello(settings: Settings) -> dict[str, Any]:
    return {"model": settings.slm_model, "messages": [{"role": "user", "content": "Say hello."}]}


def _user(token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token('acme', 'user')}"}


async def _while_streaming(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    session: str,
    second: Callable[[], Any],
) -> tuple[list[Event], httpx.Response]:
    """Stream a long turn of `session`; at its first token, send `second()` (a request) and
    read the stream to its end. The stream's events, and the second request's answer."""
    received: list[Event] = []
    sent: asyncio.Task[httpx.Response] | None = None
    body = {"session_id": session, "message": LONG}
    async with api.stream("POST", "/v1/conversation/stream", json=body, headers=headers) as r:
        async for event in events(r):
            received.append(event)
            if event.event == "token" and sent is None:
                sent = asyncio.create_task(second())
    assert sent is not None, received
    return received, await sent


async def test_interrupt_cancels_the_running_turn_then_runs_the_new_one(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    session = f"busy-{uuid.uuid4().hex[:10]}"
    headers = _user(token)
    received, second = await _while_streaming(
        api,
        headers,
        session,
        lambda: api.post(
            "/v1/conversation/step",
            json={"session_id": session, "message": "Say hello.", "on_busy": "interrupt"},
            headers=headers,
            timeout=120,
        ),
    )
    assert received[-1].event == "turn.cancelled", received[-1]
    assert second.status_code == 200, second.text
    assert second.json()["turn"] == 2 and second.json()["status"] == "completed"
    transcript = (await api.get(f"/v1/conversation/{session}", headers=headers)).json()
    assert [(t["turn"], t["status"]) for t in transcript["turns"]] == [
        (1, "cancelled"),
        (2, "completed"),
    ]
    published = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: len(found) >= 2,
    )
    assert [(e["type"], e["data"]["turn"]) for e in published] == [
        ("conversation.turn.cancelled", 1),
        ("conversation.turn.completed", 2),
    ]


async def test_reject_answers_409_and_starts_nothing_while_enqueue_waits_its_turn(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    session = f"busy-{uuid.uuid4().hex[:10]}"
    headers = _user(token)
    waiting: list[asyncio.Task[httpx.Response]] = []

    async def others() -> tuple[httpx.Response, httpx.Response]:
        step = await api.post(
            "/v1/conversation/step",
            json={"session_id": session, "message": "Say hello.", "on_busy": "reject"},
            headers=headers,
        )
        openai = await api.post(
            "/v1/chat/completions",
            json=_hello(settings),
            headers={**headers, "X-Session-Id": session, "X-On-Busy": "reject"},
        )
        waiting.append(
            asyncio.create_task(
                api.post(
                    "/v1/conversation/step",
                    json={"session_id": session, "message": "Say bye.", "on_busy": "enqueue"},
                    headers=headers,
                    timeout=120,
                )
            )
        )
        return step, openai

    received, answers = await _while_streaming(api, headers, session, others)
    step, openai = answers
    assert received[-1].event == "turn.completed"  # the running turn was left alone
    assert step.status_code == 409 and step.json()["code"] == "turn_in_progress", step.text
    assert "on_busy" in step.json()["detail"]
    assert openai.status_code == 409, openai.text
    assert openai.json()["error"]["code"] == "turn_in_progress"
    # `enqueue` (as before on_busy existed) waited for the running turn, then ran.
    queued = await waiting[0]
    assert queued.status_code == 200 and queued.json()["turn"] == 2, queued.text
    transcript = (await api.get(f"/v1/conversation/{session}", headers=headers)).json()
    assert [(t["turn"], t["message"]) for t in transcript["turns"]] == [
        (1, LONG),
        (2, "Say bye."),
    ]


async def test_an_unknown_on_busy_is_refused(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    step = await api.post(
        "/v1/conversation/step",
        json={"message": "Say hello.", "on_busy": "later"},
        headers=_user(token),
    )
    assert step.status_code == 422 and "on_busy" in step.text
    openai = await api.post(
        "/v1/chat/completions",
        json=_hello(settings),
        headers={**_user(token), "X-On-Busy": "later"},
    )
    assert openai.status_code == 400 and "X-On-Busy" in openai.text, openai.text
