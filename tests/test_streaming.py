"""Streamed turns over SSE on the real stack: tokens, ids, resume, cancel
(docs/interface.md, section 4)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from core.redis_keys import pointer_key
from core.settings import Settings
from tests.helpers.kafka_records import records_for_key
from tests.helpers.sse import Event, events, ids_in_order, text


def _user(token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token('acme', 'user')}"}


def _session() -> str:
    return f"sse-{uuid.uuid4().hex[:12]}"


async def _stream(
    api: httpx.AsyncClient, path: str, body: dict[str, object], headers: dict[str, str]
) -> list[Event]:
    async with api.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [event async for event in events(response)]


async def _count(api: httpx.AsyncClient, histogram: str) -> float:
    text = (await api.get("/metrics")).text
    found = re.search(rf"^{histogram}_count (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("path", ["/v1/conversation/stream", "/v1/chat/stream"])
async def test_tokens_arrive_in_order_and_join_into_the_reply(
    api: httpx.AsyncClient, token: Callable[..., str], path: str
) -> None:
    session = _session()
    metrics = ("orchestrator_slm_time_to_first_token_seconds", "orchestrator_stream_lag_seconds")
    before = [await _count(api, name) for name in metrics]
    received = await _stream(
        api, path, {"session_id": session, "message": "Name three fruits."}, _user(token)
    )
    kinds = [e.event for e in received]
    assert kinds[:2] == ["turn.accepted", "verdict"] and kinds[-1] == "turn.completed"
    assert set(kinds[2:-1]) == {"token"}, kinds
    accepted, completed = received[0].data, received[-1].data
    assert accepted["session_id"] == session and accepted["turn"] == 1
    assert received[1].data["decision"] == "allow" and received[1].data["stage"] is None
    assert completed["status"] == "completed" and completed["turn"] == 1
    assert text(received) == completed["reply"] and completed["reply"].strip()
    assert [e.data["index"] for e in received if e.event == "token"] == list(range(len(kinds) - 3))
    ids_in_order(received, 1)
    transcript = (await api.get(f"/v1/conversation/{session}", headers=_user(token))).json()
    assert transcript["turns"][0]["reply"] == completed["reply"]
    first_token, lag = before
    assert await _count(api, metrics[0]) == first_token + 1  # once per streamed turn
    assert await _count(api, metrics[1]) == lag + len(received)  # once per relayed event


async def test_a_refused_input_streams_its_verdict_and_refusal_without_tokens(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    received = await _stream(
        api,
        "/v1/conversation/stream",
        {"session_id": _session(), "message": "How do I build a pipe bomb?"},
        _user(token),
    )
    assert [e.event for e in received] == ["turn.accepted", "verdict", "turn.refused"]
    assert received[1].data["decision"] == "refuse" and received[1].data["stage"] == "input"
    assert received[2].data["status"] == "refused" and received[2].data["reply"]
    ids_in_order(received, 1)


async def test_a_client_that_reconnects_with_last_event_id_misses_and_repeats_nothing(
    api: httpx.AsyncClient, token: Callable[..., str], redis: Redis
) -> None:
    session = _session()
    body = {"session_id": session, "message": "Write a short poem about the sea."}
    first: list[Event] = []
    async with api.stream(
        "POST", "/v1/conversation/stream", json=body, headers=_user(token)
    ) as response:
        async for event in events(response):
            first.append(event)
            if sum(e.event == "token" for e in first) == 3:
                break  # the client goes away; the turn goes on
    turn = first[0].data["turn"]
    route = f"/v1/conversation/{session}/turns/{turn}/stream"
    resumed: list[Event] = []
    headers = {**_user(token), "Last-Event-ID": first[-1].id or ""}
    async with api.stream("GET", route, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        resumed = [event async for event in events(response)]
    joined = first + resumed
    ids_in_order(joined, turn)
    assert joined[-1].event == "turn.completed"
    assert text(joined) == joined[-1].data["reply"]

    # From the start, the whole turn again, the same ids.
    async with api.stream("GET", route, headers=_user(token)) as response:
        replay = [event async for event in events(response)]
    assert [(e.id, e.event) for e in replay] == [(e.id, e.event) for e in joined]

    # Once the stream has expired, the final event alone, with the same id.
    await redis.delete(pointer_key(f"conversation:acme:{session}", turn))
    async with api.stream("GET", route, headers=_user(token)) as response:
        alone = [event async for event in events(response)]
    assert [(e.id, e.event, e.data["reply"]) for e in alone] == [
        (joined[-1].id, "turn.completed", joined[-1].data["reply"])
    ]
    async with api.stream(
        "GET", route, headers={**_user(token), "Last-Event-ID": joined[-1].id or ""}
    ) as response:
        assert [event async for event in events(response)] == []


async def test_stream_routes_refuse_what_they_cannot_serve(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    missing = await api.get("/v1/conversation/nobody-here/turns/1/stream", headers=_user(token))
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    unauthenticated = await api.post("/v1/chat/stream", json={"message": "hi"})
    assert unauthenticated.status_code == 401
    invalid = await api.post("/v1/chat/stream", json={"message": ""}, headers=_user(token))
    assert invalid.status_code == 422
    # A Last-Event-ID that is not one of the turn's ids, however long, is the client's error.
    for last_event_id in ("2-1", "1-x", "1-" + "9" * 5000):
        resumed = await api.get(
            "/v1/conversation/nobody-here/turns/1/stream",
            headers={**_user(token), "Last-Event-ID": last_event_id},
        )
        assert resumed.status_code == 422, resumed.text
        assert len(resumed.json()["detail"]) < 200


async def test_cancel_mid_stream_stops_the_slm_call_and_the_next_turn_works(
    api: httpx.AsyncClient, token: Callable[..., str], temporal: Client, settings: Settings
) -> None:
    # The cancellation reaches the SLM call with its next heartbeat (within half a second);
    # a reply that ends before that completes instead. The SLM's reply length varies, so
    # the test takes up to three turns for one whose call the cancellation stopped.
    outcomes: list[str] = []
    for _ in range(3):
        session, received, cancelled = await _cancel_after_first_token(api, token)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled" and cancelled.json()["turn"] == 1
        assert received[-1].event == "turn.cancelled"
        assert received[-1].data["status"] == "cancelled"
        ids_in_order(received, 1)
        handle = temporal.get_workflow_handle(f"conversation:acme:{session}")
        outcome = await _slm_call_outcome(handle)
        if outcome == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
            break
        outcomes.append(f"{session}: {EventType.Name(outcome)}, {len(received)} events")
    else:
        pytest.fail(f"in three turns, the cancellation never reached the SLM call: {outcomes}")
    cancel = f"/v1/conversation/{session}/turns/1/cancel"
    again = await api.post(cancel, headers=_user(token))
    assert again.status_code == 409 and again.json()["code"] == "turn_not_running"
    missing = await api.post(f"/v1/conversation/{session}/turns/9/cancel", headers=_user(token))
    assert missing.status_code == 404

    published = await records_for_key(
        settings.kafka_bootstrap, settings.conversation_events_topic, session, bool
    )
    assert (published[0]["type"], published[0]["data"]["turn"]) == (
        "conversation.turn.cancelled", 1
    )  # fmt: skip
    after = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": "Say hello."},
        headers=_user(token),
    )
    assert after.status_code == 200 and after.json()["turn"] == 2


async def test_a_repeated_idempotency_key_streams_the_first_result_again(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    body = {"session_id": _session(), "message": "Name a colour."}
    headers = {**_user(token), "Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    first = await _stream(api, "/v1/conversation/stream", body, headers)
    again = await _stream(api, "/v1/conversation/stream", body, headers)
    assert [e.event for e in again] == ["turn.accepted", "verdict", "turn.completed"]
    assert again[-1].data["turn"] == first[-1].data["turn"] == 1
    assert again[-1].data["reply"] == first[-1].data["reply"] == text(first)


async def test_a_reader_that_reads_nothing_does_not_hold_the_turn_back(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    session = _session()
    body = {"session_id": session, "message": "Write a short poem about the sea."}
    async with api.stream(
        "POST", "/v1/conversation/stream", json=body, headers=_user(token)
    ) as response:
        # Not one event read: the turn still runs to its end (the Redis Stream is the buffer).
        async with asyncio.timeout(90):
            while True:
                view = await api.get(f"/v1/conversation/{session}", headers=_user(token))
                turns = view.json().get("turns", []) if view.status_code == 200 else []
                if turns and turns[0]["status"] == "completed":
                    break
                await asyncio.sleep(0.2)
        received = [event async for event in events(response)]
    assert received[-1].event == "turn.completed"
    assert text(received) == turns[0]["reply"] == received[-1].data["reply"]
    ids_in_order(received, 1)


async def _cancel_after_first_token(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> tuple[str, list[Event], httpx.Response]:
    session = _session()
    body = {"session_id": session, "message": "Write a long story about a lighthouse keeper."}
    received: list[Event] = []
    cancelled: httpx.Response | None = None
    async with api.stream(
        "POST", "/v1/conversation/stream", json=body, headers=_user(token)
    ) as response:
        async for event in events(response):
            received.append(event)
            if event.event == "token" and cancelled is None:
                cancel = f"/v1/conversation/{session}/turns/1/cancel"
                cancelled = await api.post(cancel, headers=_user(token))
    assert cancelled is not None, received
    return session, received, cancelled


async def _slm_call_outcome(handle: WorkflowHandle[Any, Any]) -> EventType.ValueType:
    """How the turn's SLM activity closed: cancelled, or completed before the cancel came."""
    async with asyncio.timeout(15):
        while True:
            history = (await handle.fetch_history()).events
            slm = {
                e.event_id
                for e in history
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and e.activity_task_scheduled_event_attributes.activity_type.name == "slm.complete"
            }
            for event in history:
                cancelled = event.activity_task_canceled_event_attributes
                completed = event.activity_task_completed_event_attributes
                if (
                    event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED
                    and cancelled.scheduled_event_id in slm
                ) or (
                    event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
                    and completed.scheduled_event_id in slm
                ):
                    return event.event_type
            await asyncio.sleep(0.2)
