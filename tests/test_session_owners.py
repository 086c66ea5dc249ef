"""A session belongs to the user who started it (and the tenant's admins); an Idempotency-Key
means one request; event ids never repeat across sessions of the same id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError

from core.settings import Settings
from tests.helpers.kafka_records import records_for_key


def _as(token: Callable[..., str], subject: str, role: str = "user") -> dict[str, str]:
    return {"Authorization": f"Bearer {token('acme', role, subject=subject)}"}


def _session() -> str:
    return f"own-{uuid.uuid4().hex[:10]}"


async def test_only_the_owner_and_the_tenants_admins_use_a_session(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    session = _session()
    alice, bob, carol = _as(token, "alice"), _as(token, "bob"), _as(token, "carol", "admin")
    first = await api.post(
        "/v1/conversation/step", json={"session_id": session, "message": "Hi."}, headers=alice
    )
    assert first.status_code == 200, first.text
    base = f"/v1/conversation/{session}"
    attempts = {
        "read": await api.get(base, headers=bob),
        "step": await api.post("/v1/conversation/step", headers=bob,
                               json={"session_id": session, "message": "Mine now."}),
        "stream": await api.post("/v1/conversation/stream", headers=bob,
                                 json={"session_id": session, "message": "Mine now."}),
        "follow": await api.get(f"{base}/turns/1/stream", headers=bob),
        "feedback": await api.post(f"{base}/feedback", json={"turn": 1, "rating": -1}, headers=bob),
        "cancel": await api.post(f"{base}/turns/1/cancel", headers=bob),
        "close": await api.post(f"{base}/close", headers=bob),
    }  # fmt: skip
    # To bob the session does not exist: the answers of a session nobody started.
    for name, response in attempts.items():
        assert response.status_code == 404, (name, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
        assert response.json()["detail"] == f"No session {session}.", name
    missing = await api.get(f"/v1/conversation/{_session()}", headers=bob)
    assert missing.status_code == 404
    assert {k: v for k, v in missing.json().items() if k not in ("detail", "trace_id")} == {
        k: v for k, v in attempts["read"].json().items() if k not in ("detail", "trace_id")
    }
    # Nothing bob asked for happened.
    view = (await api.get(base, headers=alice)).json()
    assert view["turn_count"] == 1 and view["status"] == "active"
    # An admin of the tenant may: the turn is theirs in its event.
    assert (await api.get(base, headers=carol)).status_code == 200
    second = await api.post(
        "/v1/conversation/step", json={"session_id": session, "message": "Hello."}, headers=carol
    )
    assert second.status_code == 200 and second.json()["turn"] == 2, second.text
    events = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: len(found) >= 2,
    )
    assert [(e["data"]["turn"], e["data"]["actor"]) for e in events] == [(1, "alice"), (2, "carol")]


async def test_an_idempotency_key_repeated_with_another_body_is_refused(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    session, headers = _session(), {**_as(token, "alice"), "Idempotency-Key": "order-1"}
    body = {"session_id": session, "message": "Say hello.", "metadata": {"n": 1}}
    first = await api.post("/v1/conversation/step", json=body, headers=headers)
    assert first.status_code == 200, first.text
    for changed in ({**body, "message": "Say goodbye."}, {**body, "metadata": {"n": 2}}):
        refused = await api.post("/v1/conversation/step", json=changed, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "idempotency_mismatch"
        streamed = await api.post("/v1/conversation/stream", json=changed, headers=headers)
        assert streamed.status_code == 422 and streamed.json()["code"] == "idempotency_mismatch"
    again = await api.post("/v1/conversation/step", json=body, headers=headers)
    assert again.status_code == 200 and again.json() == first.json()
    view = (await api.get(f"/v1/conversation/{session}", headers=headers)).json()
    assert view["turn_count"] == 1


async def test_a_retry_with_an_idempotency_key_and_no_session_reaches_the_first_session(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    key = f"first-{uuid.uuid4().hex[:8]}"
    body = {"message": "Say hello."}
    answers = [
        await api.post(
            "/v1/conversation/step",
            json=body,
            headers={**_as(token, "alice"), "Idempotency-Key": key},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200], answers[-1].text
    assert answers[0].json() == answers[1].json() and answers[0].json()["turn"] == 1
    # The key names a session per user: another user's same key is another session.
    other = await api.post(
        "/v1/conversation/step", json=body, headers={**_as(token, "bob"), "Idempotency-Key": key}
    )
    assert other.status_code == 200, other.text
    assert other.json()["session_id"] != answers[0].json()["session_id"]


async def test_a_session_id_used_again_after_its_history_is_gone_gets_new_event_ids(
    api: httpx.AsyncClient, token: Callable[..., str], temporal: Client, settings: Settings
) -> None:
    session, alice = _session(), _as(token, "alice")
    workflow_id = f"conversation:acme:{session}"
    body = {"session_id": session, "message": "Hi."}
    assert (await api.post("/v1/conversation/step", json=body, headers=alice)).status_code == 200
    assert (await api.post(f"/v1/conversation/{session}/close", headers=alice)).status_code == 200
    # The workflow refuses a turn of a closed session: the stream route says so at once.
    streamed = await api.post("/v1/conversation/stream", json=body, headers=alice)
    assert streamed.status_code == 409 and streamed.json()["code"] == "session_closed"
    await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: any(e["type"] == "conversation.closed" for e in found),
    )
    # As retention would: the closed session's history is deleted, and its id is free again.
    await temporal.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=temporal.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
        )
    )
    async with asyncio.timeout(60):
        while True:
            try:
                await temporal.get_workflow_handle(workflow_id).describe()
            except RPCError:
                break
            await asyncio.sleep(0.5)
    again = await api.post("/v1/conversation/step", json=body, headers=alice)
    assert again.status_code == 200 and again.json()["turn"] == 1, again.text
    events = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: sum(e["type"] == "conversation.turn.completed" for e in found) == 2,
    )
    turn_ids = [e["id"] for e in events if e["type"] == "conversation.turn.completed"]
    assert len(set(turn_ids)) == 2


async def test_an_openai_user_names_a_session_of_the_callers_own(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    """Bob cannot take the session alice's `user` names first: each gets their own."""
    user = f"u-{uuid.uuid4().hex[:8]}"
    sessions = {}
    for subject in ("bob", "alice", "alice"):
        answer = await api.post(
            "/v1/chat/completions",
            json={
                "model": "SmolLM2-135M-Instruct",
                "user": user,
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "Say hi."}],
            },
            headers=_as(token, subject),
        )
        assert answer.status_code == 200, answer.text
        sessions.setdefault(subject, set()).add(answer.headers["x-session-id"])
    assert len(sessions["alice"]) == 1  # alice's `user` names one session, again and again
    assert sessions["alice"] != sessions["bob"] and user not in sessions["alice"]
    (alices,) = sessions["alice"]
    view = await api.get(f"/v1/conversation/{alices}", headers=_as(token, "alice"))
    assert view.status_code == 200 and view.json()["turn_count"] == 2
