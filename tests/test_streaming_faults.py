"""Streamed turns when things go wrong: a refused window, a stuck turn, a worker killed
mid-stream (docs/interface.md, section 4), on the real stack."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from activities.slm import SlmActivities
from core.moderation.reply_check import WINDOW_STEP_CHARS
from core.settings import Settings
from deploy.stack import EmbeddedStack
from tests.helpers.direct_turns import step_directly
from tests.helpers.kafka_records import records_for_key
from tests.helpers.refused_window import refused_midway
from tests.helpers.sse import Event, events, ids_in_order, text
from workflows.conversation.types import TurnRequest

STORY = "Write a long story about a lighthouse keeper."


def _user(token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token('acme', 'user')}"}


async def _follow(
    api: httpx.AsyncClient, session: str, headers: dict[str, str], turn: int = 1
) -> list[Event]:
    route = f"/v1/conversation/{session}/turns/{turn}/stream"
    async with api.stream("GET", route, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        return [event async for event in events(response)]


async def test_a_refused_window_retracts_what_was_sent_then_refuses(
    api: httpx.AsyncClient,
    token: Callable[..., str],
    temporal: Client,
    settings: Settings,
    redis: Redis,
    slm_activities: Callable[..., SlmActivities],
    tmp_path: Path,
) -> None:
    # Its own SLM worker refuses the reply at its first window (tests/refused_window.py).
    session = f"window-{uuid.uuid4().hex[:10]}"
    result, refusal = await refused_midway(
        temporal, settings, slm_activities, tmp_path, session, uuid.uuid4().hex
    )
    assert (result.status, result.reply) == ("refused", refusal)
    assert (result.verdict.stage, result.verdict.category) == ("output", "pii")
    assert result.usage.completion_tokens < 64  # the call stopped at the refused window

    received = await _follow(api, session, _user(token))
    kinds = [e.event for e in received]
    assert kinds[:2] == ["turn.accepted", "verdict"] and kinds[-2:] == ["retract", "turn.refused"]
    sent = "".join(e.data["delta"] for e in received if e.event == "token")
    # At most one step of text went out unchecked; the delta that ended it never did.
    assert sent and len(sent) < WINDOW_STEP_CHARS
    assert received[-2].data == {"reason": "moderation"} and text(received) == ""
    refused = received[-1].data
    assert refused["reply"] == refusal and refused["verdict"]["stage"] == "output"
    ids_in_order(received, 1)

    published = await records_for_key(
        settings.kafka_bootstrap, settings.conversation_events_topic, session, bool
    )
    assert [e["type"] for e in published] == ["conversation.turn.refused"]
    assert published[0]["data"]["reply"] == refusal
    assert published[0]["data"]["verdict"]["stage"] == "output"


async def test_a_stuck_turn_ends_failed_at_its_time_limit_with_its_event(
    api: httpx.AsyncClient, token: Callable[..., str], temporal: Client, settings: Settings
) -> None:
    # No worker polls this SLM queue: the call is never picked up, as with every SLM worker down.
    session = f"stuck-{uuid.uuid4().hex[:10]}"
    stuck = {"slm_task_queue": f"unserved-{uuid.uuid4().hex}", "max_turn_seconds": 3.0}
    request = TurnRequest(message="Hello?", stream_id=uuid.uuid4().hex)
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await step_directly(temporal, settings, session, request, **stuck)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "turn_timeout"

    # Its stream: the opening (the SLM activity never wrote it), then the problem.
    received = await _follow(api, session, _user(token))
    assert [e.event for e in received] == ["turn.accepted", "verdict", "error"]
    problem = received[-1].data
    assert (problem["status"], problem["code"]) == (504, "turn_timeout")
    assert "3 s" in problem["detail"] and "Retry" in problem["detail"]
    ids_in_order(received, 1)

    # The step route on the same session (its workflow keeps its settings): a 504 problem.
    response = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": "Hello again?"},
        headers=_user(token),
    )
    assert response.status_code == 504, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "turn_timeout" and response.json()["detail"] == cause.message

    transcript = (await api.get(f"/v1/conversation/{session}", headers=_user(token))).json()
    assert [t["status"] for t in transcript["turns"]] == ["failed", "failed"]
    published = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: len(found) >= 2,
    )
    assert [e["type"] for e in published] == ["conversation.turn.failed"] * 2
    assert [e["data"]["failure"] for e in published] == ["turn_timeout"] * 2


async def _killed_mid_stream(
    stack: EmbeddedStack, api: httpx.AsyncClient, token: Callable[..., str], session: str, name: str
) -> list[Event]:
    """Start a streamed turn, SIGKILL the `name` service (by its pid) once three tokens
    arrived, restart it, and return what the client got before its stream broke off."""
    first: list[Event] = []
    try:
        async with api.stream(
            "POST",
            "/v1/conversation/stream",
            json={"session_id": session, "message": STORY},
            headers=_user(token),
        ) as response:
            async for event in events(response):
                first.append(event)
                if sum(e.event == "token" for e in first) == 3:
                    os.killpg(stack.pids()[name], signal.SIGKILL)  # without a goodbye
                    break
    except httpx.HTTPError:
        pass  # the connection broke with the API process: what a client sees
    await stack.stop((name,))
    await stack.start((name,))
    return first


async def test_worker_killed_mid_stream_the_resumed_client_gets_the_whole_reply_once(
    stack: EmbeddedStack, api_url: str, token: Callable[..., str]
) -> None:
    session = f"kill-sse-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=api_url, timeout=180) as api:
        first = await _killed_mid_stream(stack, api, token, session, "worker")
        resumed = await _follow(api, session, {**_user(token), "Last-Event-ID": first[-1].id or ""})
    joined = first + resumed
    ids_in_order(joined, 1)
    assert joined[-1].event == "turn.completed", [e.event for e in resumed]
    # The retried call took back the first attempt's text and sent its own, once.
    assert [e.data for e in resumed if e.event == "retract"] == [{"reason": "retry"}]
    assert text(joined) == joined[-1].data["reply"] and joined[-1].data["reply"].strip()


async def test_api_killed_mid_stream_the_client_resumes_on_a_new_one_and_misses_nothing(
    stack: EmbeddedStack, api_url: str, token: Callable[..., str]
) -> None:
    session = f"kill-api-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=api_url, timeout=180) as api:
        # The API process dies with the stream open; the turn goes on in the worker.
        first = await _killed_mid_stream(stack, api, token, session, "api")
        resumed = await _follow(api, session, {**_user(token), "Last-Event-ID": first[-1].id or ""})
    joined = first + resumed
    ids_in_order(joined, 1)
    assert joined[-1].event == "turn.completed", [e.event for e in resumed]
    # The worker never stopped: nothing to take back, every token once.
    assert not [e for e in joined if e.event == "retract"]
    assert text(joined) == joined[-1].data["reply"] and joined[-1].data["reply"].strip()
