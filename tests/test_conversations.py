"""Conversation turns through the API, on the real stack (CONTRACT sections 4, 5, 7)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
from temporalio.client import Client

from core.settings import Settings
from tests.kafka_records import records_for_key


def _auth(token: Callable[..., str], tenant: str = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant, 'user')}"}


def _session() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


async def test_a_turn_gets_a_reply_recorded_everywhere_alike(
    api: httpx.AsyncClient, token: Callable[..., str], temporal: Client, settings: Settings
) -> None:
    session = _session()
    response = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": "Name three colours of the rainbow."},
        headers=_auth(token),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed" and body["turn"] == 1
    assert body["reply"].strip()
    assert body["verdict"]["decision"] == "allow" and body["verdict"]["stage"] is None
    assert body["usage"]["completion_tokens"] > 0
    assert body["workflow_id"] == f"conversation:acme:{session}"
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert response.headers["x-policy-verdict"] == "allow"
    assert response.headers["x-constitution-hash"] == body["verdict"]["constitution_hash"]
    assert response.headers["x-policy-version"] == body["verdict"]["policy_version"]

    transcript = (await api.get(f"/v1/conversation/{session}", headers=_auth(token))).json()
    assert transcript["status"] == "active"
    assert [(t["turn"], t["reply"], t["trace_id"]) for t in transcript["turns"]] == [
        (1, body["reply"], body["trace_id"])
    ]

    description = await temporal.get_workflow_handle(body["workflow_id"]).describe()
    attributes = {key.name: value for key, value in description.typed_search_attributes}
    assert attributes["Tenant"] == "acme" and attributes["SessionId"] == session
    assert attributes["TurnCount"] == 1 and attributes["LastVerdict"] == "allow"
    assert attributes["PolicyVersion"] == body["verdict"]["policy_version"]
    assert attributes["TrainingMode"] is False

    events = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: bool(found),
    )
    event = events[0]
    assert event["type"] == "conversation.turn.completed" and event["specversion"] == "1.0"
    assert event["data"]["turn"] == 1 and event["data"]["reply"] == body["reply"]
    assert event["data"]["trace_id"] == body["trace_id"]
    assert event["traceparent"].split("-")[1] == body["trace_id"]
    assert event["_headers"]["event_id"] == event["id"]
    assert event["_headers"]["policy_verdict"] == "allow"
    assert event["_headers"]["constitution_hash"] == body["verdict"]["constitution_hash"]
