"""DELETE /v1/conversation/{session_id} and POST /v1/erasure: a session gone from Temporal,
Redis and the live API, its tombstone on the events topic, its id never used again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from core.redis_keys import session_streams_pattern, turn_slots_key
from core.settings import Settings
from tests.helpers.kafka_records import records_for_key
from tests.helpers.own_api import own_api
from tests.helpers.sse import Event, events


def _bearer(token: Callable[..., str], role: str, subject: str, tenant: str = "acme") -> Any:
    return {"Authorization": f"Bearer {token(tenant, role, subject=subject)}"}


async def _runs(temporal: Client, workflow_id: str) -> set[str]:
    return {e.run_id async for e in temporal.list_workflows(f"WorkflowId = '{workflow_id}'")}


async def _gone_from_temporal(temporal: Client, workflow_id: str, runs: set[str]) -> None:
    """Every run of the chain is deleted (Temporal deletes a history shortly after asked)."""
    async with asyncio.timeout(30):
        for run_id in runs:
            while True:
                try:
                    await temporal.get_workflow_handle(workflow_id, run_id=run_id).describe()
                except RPCError as error:
                    assert error.status == RPCStatusCode.NOT_FOUND, error
                    break
                await asyncio.sleep(0.2)


async def _redis_keys(redis: Redis, tenant: str, session: str) -> list[str]:
    pattern = session_streams_pattern(f"conversation:{tenant}:{session}")
    keys = [key async for key in redis.scan_iter(match=pattern)]
    if await redis.exists(turn_slots_key(tenant, session)):
        keys.append(turn_slots_key(tenant, session))
    return keys


async def _streamed(api: httpx.AsyncClient, headers: Any, session: str, message: str) -> None:
    body = {"session_id": session, "message": message}
    async with api.stream("POST", "/v1/conversation/stream", json=body, headers=headers) as r:
        assert r.status_code == 200
        assert [e async for e in events(r)][-1].event == "turn.completed"


async def test_a_deleted_session_is_gone_everywhere_and_its_id_never_comes_back(
    token: Callable[..., str], temporal: Client, settings: Settings, redis: Redis
) -> None:
    run = uuid.uuid4().hex[:8]
    alice = _bearer(token, "user", f"alice-{run}")
    mallory = _bearer(token, "user", f"mallory-{run}")
    session = f"del-{run}"
    workflow_id = f"conversation:acme:{session}"
    # Sessions of this API continue as new every two turns: a chain of two runs.
    chained = settings.model_copy(update={"conversation_turns_per_run": 2})
    async with own_api(chained) as url, httpx.AsyncClient(base_url=url, timeout=90) as api:
        for message in ("Say one.", "Say two."):
            step = await api.post(
                "/v1/conversation/step",
                json={"session_id": session, "message": message},
                headers=alice,
            )
            assert step.status_code == 200, step.text
        await _streamed(api, alice, session, "Name a colour.")
        assert await _redis_keys(redis, "acme", session)  # what the streamed turn left
        async with asyncio.timeout(30):
            while len(runs := await _runs(temporal, workflow_id)) < 2:
                await asyncio.sleep(0.2)

        # Another user of the tenant: no such session for them, and it stays as it is.
        refused = await api.delete(f"/v1/conversation/{session}", headers=mallory)
        assert refused.status_code == 404, refused.text
        assert (await api.get(f"/v1/conversation/{session}", headers=alice)).status_code == 200

        deleted = await api.delete(f"/v1/conversation/{session}", headers=alice)
        assert deleted.status_code == 204, deleted.text
        await _gone_from_temporal(temporal, workflow_id, runs)
        assert await _redis_keys(redis, "acme", session) == []
        for method, path, body in (
            ("GET", f"/v1/conversation/{session}", None),
            ("GET", f"/v1/conversation/{session}/turns/3/stream", None),
            ("POST", f"/v1/conversation/{session}/feedback", {"turn": 1, "rating": 1}),
            ("POST", f"/v1/conversation/{session}/close", None),
            ("DELETE", f"/v1/conversation/{session}", None),  # a second DELETE
        ):
            answer = await api.request(method, path, json=body, headers=alice)
            assert answer.status_code == 404, (method, path, answer.text)
        again = await api.post(
            "/v1/conversation/step", json={"session_id": session, "message": "Hi."}, headers=alice
        )
        assert again.status_code == 404 and "not used again" in again.json()["detail"]
        openai = await api.post(
            "/v1/chat/completions",
            json={"model": settings.slm_model, "messages": [{"role": "user", "content": "Hi."}]},
            headers={**alice, "X-Session-Id": session},
        )
        assert openai.status_code == 404, openai.text
        listed = await api.get("/v1/conversations", headers=alice)
        assert session not in {s["session_id"] for s in listed.json()["sessions"]}

    published = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: any(e["type"] == "conversation.deleted" for e in found),
    )
    tombstone = next(e for e in published if e["type"] == "conversation.deleted")
    assert tombstone["data"] == {
        "session_id": session,
        "reason": "deleted",
        "actor": f"alice-{run}",
    }


async def test_erasure_deletes_every_session_of_a_subject_and_nothing_else(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    erin = _bearer(token, "user", f"erin-{run}")
    frank = _bearer(token, "user", f"frank-{run}")
    admin = _bearer(token, "admin", f"admin-{run}")
    sessions = [f"erase-{run}-{n}" for n in range(3)]
    kept = f"keep-{run}"
    for headers, session in [*((erin, s) for s in sessions), (frank, kept)]:
        step = await api.post(
            "/v1/conversation/step",
            json={"session_id": session, "message": "Name a fruit."},
            headers=headers,
            timeout=120,
        )
        assert step.status_code == 200, step.text
    async with asyncio.timeout(30):  # visibility knows them (it lags a few milliseconds)
        while len((await api.get("/v1/conversations", headers=erin)).json()["sessions"]) < 3:
            await asyncio.sleep(0.2)

    refused = await api.post("/v1/erasure", json={"subject": f"erin-{run}"}, headers=erin)
    assert refused.status_code == 403, refused.text

    # The erasure starts while a turn of one of her sessions is streaming.
    received: list[Event] = []
    job: httpx.Response | None = None
    body = {"session_id": sessions[0], "message": "Write a long story about a lighthouse."}
    async with api.stream("POST", "/v1/conversation/stream", json=body, headers=erin) as r:
        async for event in events(r):
            received.append(event)
            if event.event == "token" and job is None:
                job = await api.post("/v1/erasure", json={"subject": f"erin-{run}"}, headers=admin)
    assert job is not None and job.status_code == 202, job
    assert received[-1].event == "turn.cancelled", received[-1]
    job_id = job.json()["job_id"]
    assert job.headers["location"] == f"/v1/erasure/{job_id}"
    async with asyncio.timeout(90):
        while (status := await api.get(f"/v1/erasure/{job_id}", headers=admin)).json()[
            "status"
        ] == "running":
            await asyncio.sleep(0.2)
    assert status.json() == {
        "job_id": job_id,
        "status": "completed",
        "sessions_found": 3,
        "sessions_deleted": 3,
    }
    for session in sessions:
        answer = await api.get(f"/v1/conversation/{session}", headers=admin)
        assert answer.status_code == 404, answer.text
    assert (await api.get(f"/v1/conversation/{kept}", headers=frank)).status_code == 200
    other = _bearer(token, "admin", f"admin-{run}", tenant="globex")
    assert (await api.get(f"/v1/erasure/{job_id}", headers=other)).status_code == 404
    for session in sessions:
        published = await records_for_key(
            settings.kafka_bootstrap,
            settings.conversation_events_topic,
            session,
            lambda found: any(e["type"] == "conversation.deleted" for e in found),
        )
        tombstones = [e for e in published if e["type"] == "conversation.deleted"]
        assert [e["data"]["reason"] for e in tombstones] == ["erasure"]
