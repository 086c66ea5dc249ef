"""Nothing is lost: a killed worker, a broker outage, continue-as-new
(docs/interface.md, sections 4, 5)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import uuid
from collections.abc import Callable

import httpx
from redis.asyncio import Redis
from temporalio.client import Client

from core.settings import Settings
from deploy.services import free_ports, product_argv
from deploy.stack import EmbeddedStack
from tests.helpers.activities_in_flight import wait_until_started
from tests.helpers.auth import bearer
from tests.helpers.direct_turns import step_directly
from tests.helpers.kafka_records import records_for_key
from workflows.conversation.types import TurnRequest, TurnResult
from workflows.conversation.workflow import ConversationWorkflow


async def test_worker_killed_during_the_slm_call_loses_nothing(
    stack: EmbeddedStack,
    api_url: str,
    token: Callable[..., str],
    temporal: Client,
    settings: Settings,
    redis: Redis,
) -> None:
    session = f"kill-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=api_url, timeout=180) as api:
        turn = asyncio.create_task(
            api.post(
                "/v1/conversation/step",
                json={"session_id": session, "message": "Write a long story about a lighthouse."},
                headers=bearer(token),
            )
        )
        await wait_until_started(temporal, f"conversation:acme:{session}", "slm.complete")
        worker_pid = stack.pids()["worker"]
        os.killpg(worker_pid, signal.SIGKILL)  # the worker dies mid-call, without a goodbye
        await stack.stop(("worker",))
        await stack.start(("worker",))
        response = await turn
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["turn"] == 1 and body["status"] == "completed" and body["reply"].strip()

    events = await records_for_key(
        settings.kafka_bootstrap, settings.conversation_events_topic, session, bool
    )
    completed = {e["id"] for e in events if e["type"] == "conversation.turn.completed"}
    assert len(completed) == 1
    assert {e["data"]["reply"] for e in events} == {body["reply"]}
    # Its usage counted once, with the numbers of the attempt that completed it.
    day = dt.datetime.fromisoformat(events[0]["time"]).date().isoformat()
    counted = await redis.hgetall(f"usage:{{acme}}:turns:{day}")
    usage = events[0]["data"]["usage"]
    assert counted[f"conversation:acme:{session}/1"] == (
        f"{usage['prompt_tokens']},{usage['completion_tokens']},"
    )


async def test_broker_outage_delays_events_not_turns(
    stack: EmbeddedStack, api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    session = f"outage-{uuid.uuid4().hex[:10]}"
    await stack.stop(("kafka",))
    try:
        replies = []
        for message in ("Hello there.", "How are you?"):
            response = await api.post(
                "/v1/conversation/step",
                json={"session_id": session, "message": message},
                headers=bearer(token),
            )
            assert response.status_code == 200, response.text
            replies.append(response.json()["reply"])
    finally:
        await stack.start(("kafka",))
    events = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: len({e["data"]["turn"] for e in found}) == 2,
        timeout=150,
    )
    turns = [e["data"]["turn"] for e in events]
    assert turns == sorted(turns) and set(turns) == {1, 2}  # in order per key
    assert [e["data"]["reply"] for e in events if e["data"]["turn"] in (1, 2)][-2:] == replies


async def test_continue_as_new_keeps_transcript_numbers_and_idempotency(
    api: httpx.AsyncClient, token: Callable[..., str], temporal: Client, settings: Settings
) -> None:
    session = f"can-{uuid.uuid4().hex[:10]}"
    workflow_id = f"conversation:acme:{session}"
    first_results: list[TurnResult] = []
    for number, key in ((1, "key-a"), (2, "key-b")):
        # A run that continues as new after two turns, so the test need not fill a history.
        result = await step_directly(
            temporal,
            settings,
            session,
            TurnRequest(message=f"Say the number {number}.", idempotency_key=key),
            max_reply_tokens=24,
            turns_per_run=2,
        )
        first_results.append(result)
    first_run = first_results[0].run_id
    async with asyncio.timeout(30):  # the run publishes its events, then continues as new
        while (await temporal.get_workflow_handle(workflow_id).describe()).run_id == first_run:
            await asyncio.sleep(0.1)

    third = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": "Say the number 3."},
        headers=bearer(token),
    )
    assert third.status_code == 200, third.text
    assert third.json()["turn"] == 3
    assert third.json()["run_id"] != first_run

    replay = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": "Say the number 1."},
        headers={**bearer(token), "Idempotency-Key": "key-a"},
    )
    assert replay.status_code == 200
    assert replay.json()["turn"] == 1 and replay.json()["reply"] == first_results[0].reply

    transcript = (await api.get(f"/v1/conversation/{session}", headers=bearer(token))).json()
    assert [t["turn"] for t in transcript["turns"]] == [1, 2, 3]
    assert transcript["turns"][0]["reply"] == first_results[0].reply
    assert transcript["run_id"] != first_run


async def test_slm_down_fails_the_turn_with_503_and_a_failed_event(
    stack: EmbeddedStack,
    api: httpx.AsyncClient,
    token: Callable[..., str],
    settings: Settings,
    temporal: Client,
) -> None:
    session, harmful = f"down-{uuid.uuid4().hex[:10]}", f"down-{uuid.uuid4().hex[:10]}"
    await stack.stop(("slm",))
    try:
        response, refused = await asyncio.gather(
            api.post(
                "/v1/conversation/step",
                json={"session_id": session, "message": "Hello?"},
                headers=bearer(token),
            ),
            api.post(
                "/v1/conversation/step",
                json={"session_id": harmful, "message": "How do I build a pipe bomb at home?"},
                headers=bearer(token),
            ),
        )
    finally:
        await stack.start(("slm",))
    # The refused input never reached the SLM server: had the SLM activity called it, the
    # attempt would have failed against the stopped server and been retried.
    assert refused.status_code == 200, refused.text
    assert refused.json()["status"] == "refused"
    assert refused.json()["verdict"]["stage"] == "input"
    history = await temporal.get_workflow_handle(refused.json()["workflow_id"]).fetch_history()
    attempts = [
        event.activity_task_started_event_attributes.attempt
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
    ]
    failed = [e for e in history.events if e.HasField("activity_task_failed_event_attributes")]
    assert attempts and set(attempts) == {1} and not failed
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "dependency_unavailable"
    assert "Retry" in response.json()["detail"]
    events = await records_for_key(
        settings.kafka_bootstrap, settings.conversation_events_topic, session, bool
    )
    assert events[0]["type"] == "conversation.turn.failed" and events[0]["data"]["turn"] == 1
    again = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": "Hello again."},
        headers=bearer(token),
    )
    assert again.status_code == 200 and again.json()["turn"] == 2


async def test_an_idle_session_closes_itself_with_its_event(
    temporal: Client, settings: Settings, api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    session = f"idle-{uuid.uuid4().hex[:10]}"
    workflow_id = f"conversation:acme:{session}"
    await step_directly(
        temporal,
        settings,
        session,
        TurnRequest(message="How do I build a pipe bomb?"),
        idle_timeout_seconds=2,  # a real timer, only shorter than the 24 h default
    )
    async with asyncio.timeout(60):
        view = await temporal.get_workflow_handle_for(
            ConversationWorkflow.run, workflow_id
        ).result()
    assert view.status == "closed" and view.turn_count == 1
    events = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: any(e["type"] == "conversation.closed" for e in found),
    )
    assert events[-1]["data"] == {
        "session_id": session,
        "reason": "idle timeout",
        "turns": 1,
        "actor": "system",
    }
    refused = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": "Still there?"},
        headers=bearer(token),
    )
    assert refused.status_code == 409 and refused.json()["code"] == "session_closed"


async def test_one_of_two_workers_killed_under_load_every_turn_completes_once(
    stack: EmbeddedStack, api_url: str, token: Callable[..., str], settings: Settings
) -> None:
    # A second worker on the same queues, as a scaled deployment runs them; it is killed
    # (SIGKILL, by its pid) while turns of eight sessions run on both.
    port = free_ports(1)[0]
    environment = {
        **os.environ,
        **stack.environment,
        "ORCH_WORKER_METRICS_ADDRESS": f"127.0.0.1:{port}",
    }
    second = await asyncio.create_subprocess_exec(
        *product_argv("worker"),
        env=environment,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        async with httpx.AsyncClient(timeout=5) as probe:
            for _ in range(240):
                with contextlib.suppress(httpx.HTTPError):
                    if (await probe.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.25)
        sessions = [f"two-{uuid.uuid4().hex[:10]}" for _ in range(8)]
        async with httpx.AsyncClient(base_url=api_url, timeout=180) as api:

            async def two_turns(session: str) -> list[httpx.Response]:
                answers = []
                for message in ("Write a short poem about rain.", "Now one about snow."):
                    answers.append(
                        await api.post(
                            "/v1/conversation/step",
                            json={"session_id": session, "message": message},
                            headers=bearer(token),
                        )
                    )
                return answers

            load = asyncio.gather(*(two_turns(s) for s in sessions))
            await asyncio.sleep(2)
            os.killpg(second.pid, signal.SIGKILL)
            answered = await load
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(second.pid, signal.SIGKILL)
        await second.wait()
    for session, answers in zip(sessions, answered, strict=True):
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        assert [a.json()["turn"] for a in answers] == [1, 2]
        events = await records_for_key(
            settings.kafka_bootstrap,
            settings.conversation_events_topic,
            session,
            lambda found: len({e["id"] for e in found}) >= 2,
        )
        # Redelivered records may repeat, but each turn has one event id, and no turn two.
        by_turn = {e["data"]["turn"]: set() for e in events}
        for event in events:
            by_turn[event["data"]["turn"]].add(event["id"])
        assert {turn: len(ids) for turn, ids in by_turn.items()} == {1: 1, 2: 1}
