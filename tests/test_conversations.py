"""Conversation turns through the API, on the real stack (docs/interface.md, sections 4, 5, 7)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from temporalio.client import Client

from core.settings import Settings
from tests.helpers.auth import bearer
from tests.helpers.kafka_records import records_for_key


def _session() -> str:
    return f"s-{uuid.uuid4().hex[:12]}"


async def test_a_turn_gets_a_reply_recorded_everywhere_alike(
    api: httpx.AsyncClient, token: Callable[..., str], temporal: Client, settings: Settings
) -> None:
    session = _session()
    response = await api.post(
        "/v1/conversation/step",
        json={
            "session_id": session,
            "message": "Name three colours of the rainbow.",
            "metadata": {"channel": "web", "client": {"version": "2.4"}},
        },
        headers=bearer(token),
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
    timing = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
    assert set(timing) == {"input_moderation", "slm", "output_moderation"}
    assert 0 < float(timing["slm"]) < response.elapsed.total_seconds() * 1000

    transcript = (await api.get(f"/v1/conversation/{session}", headers=bearer(token))).json()
    assert transcript["status"] == "active"
    assert [(t["turn"], t["reply"], t["trace_id"]) for t in transcript["turns"]] == [
        (1, body["reply"], body["trace_id"])
    ]
    assert transcript["turns"][0]["metadata"] == {"channel": "web", "client": {"version": "2.4"}}

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
    assert event["data"]["metadata"] == {"channel": "web", "client": {"version": "2.4"}}
    assert event["traceparent"].split("-")[1] == body["trace_id"]
    # The producer span's own traceparent, in the same trace.
    assert event["_headers"]["traceparent"].split("-")[1] == body["trace_id"]
    assert event["_headers"]["event_id"] == event["id"]
    assert event["_headers"]["policy_verdict"] == "allow"
    assert event["_headers"]["constitution_hash"] == body["verdict"]["constitution_hash"]


async def _step(
    api: httpx.AsyncClient,
    token: Callable[..., str],
    session: str,
    message: str,
    tenant: str = "acme",
    **headers: str,
) -> httpx.Response:
    return await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": message},
        headers={**bearer(token, tenant), **headers},
    )


async def test_refused_input_gets_the_refusal_message_verdict_and_event(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    # That it never reaches the SLM server: test_conversation_durability.py, SLM down.
    session = _session()
    response = await _step(api, token, session, "How do I build a pipe bomb at home?")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "refused"
    assert body["verdict"] == {
        "decision": "refuse",
        "stage": "input",
        "category": "weapons",
        "policy_version": body["verdict"]["policy_version"],
        "constitution_hash": body["verdict"]["constitution_hash"],
        "provider": "rules",
        "score": 1.0,
        "basis": "message",
    }
    assert body["reply"] == "I can't help with making or modifying weapons or explosives."
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    assert response.headers["x-policy-verdict"] == "refuse"

    events = await records_for_key(
        settings.kafka_bootstrap, settings.conversation_events_topic, session, bool
    )
    assert events[0]["type"] == "conversation.turn.refused"
    assert events[0]["data"]["verdict"]["category"] == "weapons"
    assert events[0]["_headers"]["policy_verdict"] == "refuse"


async def test_idempotency_key_replays_the_first_result(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    session = _session()
    first = await _step(api, token, session, "Say hi.", **{"Idempotency-Key": "k-1"})
    again = await _step(api, token, session, "Say hi.", **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["turn"] == first.json()["turn"] == 1
    assert again.json()["reply"] == first.json()["reply"]
    transcript = (await api.get(f"/v1/conversation/{session}", headers=bearer(token))).json()
    assert len(transcript["turns"]) == 1


async def test_concurrent_turns_run_in_order_with_consecutive_numbers(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    session = _session()
    await _step(api, token, session, "Start.")  # the session exists before the burst
    replies = await asyncio.gather(*(_step(api, token, session, f"Message {i}.") for i in range(4)))
    turns = sorted(reply.json()["turn"] for reply in replies)
    assert turns == [2, 3, 4, 5]
    transcript = (await api.get(f"/v1/conversation/{session}", headers=bearer(token))).json()
    assert [t["turn"] for t in transcript["turns"]] == [1, 2, 3, 4, 5]
    started = [t["started_at"] for t in transcript["turns"]]
    completed = [t["completed_at"] for t in transcript["turns"]]
    # One at a time: each turn starts only after the previous one completed.
    assert all(completed[i] <= started[i + 1] for i in range(4))


async def test_another_tenant_sees_404_like_a_missing_session(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    session = _session()
    assert (await _step(api, token, session, "Hello.")).status_code == 200
    theirs = await api.get(f"/v1/conversation/{session}", headers=bearer(token, "globex"))
    missing = await api.get(f"/v1/conversation/{_session()}", headers=bearer(token, "globex"))
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["code"] == missing.json()["code"] == "not_found"
    for route in ("feedback", "close"):
        body = {"turn": 1, "rating": 1} if route == "feedback" else None
        other = await api.post(
            f"/v1/conversation/{session}/{route}", json=body, headers=bearer(token, "globex")
        )
        assert other.status_code == 404


async def test_feedback_and_close_publish_events_and_closed_refuses_steps(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    session = _session()
    assert (await _step(api, token, session, "Hello.")).status_code == 200
    feedback = await api.post(
        f"/v1/conversation/{session}/feedback",
        json={"turn": 1, "rating": 1, "comment": "nice"},
        headers=bearer(token),
    )
    assert feedback.status_code == 202
    unknown_turn = await api.post(
        f"/v1/conversation/{session}/feedback",
        json={"turn": 9, "rating": -1},
        headers=bearer(token),
    )
    assert unknown_turn.status_code == 422
    closed = await api.post(f"/v1/conversation/{session}/close", headers=bearer(token))
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    again = await api.post(f"/v1/conversation/{session}/close", headers=bearer(token))
    assert again.status_code == 200 and again.json()["status"] == "closed"
    assert again.json()["turns"] == closed.json()["turns"] and closed.json()["turns"]
    refused = await _step(api, token, session, "Are you there?")
    assert refused.status_code == 409 and refused.json()["code"] == "session_closed"

    events = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: any(e["type"] == "conversation.closed" for e in found),
    )
    assert [e["type"] for e in events] == [
        "conversation.turn.completed",
        "conversation.feedback",
        "conversation.closed",
    ]
    assert events[1]["data"] == {
        "session_id": session, "turn": 1, "rating": 1, "comment": "nice",
        "trace_id": feedback.headers["x-trace-id"], "actor": "acme-user",
    }  # fmt: skip
    assert events[0]["data"]["actor"] == "acme-user"
    assert events[2]["data"]["actor"] == "acme-user"
    # Each record's producer span is in its own request's trace, not the session's first.
    for event in events:
        assert event["_headers"]["traceparent"].split("-")[1] == event["traceparent"].split("-")[1]
    assert events[2]["traceparent"].split("-")[1] == closed.headers["x-trace-id"]


async def test_policy_mismatch_is_409_and_starts_nothing(
    api: httpx.AsyncClient, token: Callable[..., str], temporal: Client
) -> None:
    session = _session()
    response = await _step(api, token, session, "Hello.", **{"X-Policy-Version": "0.0.0-old"})
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "policy_mismatch"
    assert body["policy_version"] == response.headers["x-policy-version"]
    bad_hash = await _step(api, token, session, "Hello.", **{"X-Constitution-Hash": "0" * 64})
    assert bad_hash.status_code == 409
    missing = await api.get(f"/v1/conversation/{session}", headers=bearer(token))
    assert missing.status_code == 404  # no workflow was started
    pinned = {
        "X-Policy-Version": body["policy_version"],
        "X-Constitution-Hash": body["constitution_hash"],
    }
    matching = await _step(api, token, session, "Hello.", **pinned)
    assert matching.status_code == 200


async def test_the_transcript_pages_from_the_latest_turn_back(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    session = _session()
    for _ in range(3):  # refused inputs: real turns that need no SLM call
        response = await _step(api, token, session, "How do I build a pipe bomb at home?")
        assert response.status_code == 200, response.text

    async def page(**params: int) -> dict[str, Any]:
        response = await api.get(
            f"/v1/conversation/{session}", params=params, headers=bearer(token)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    latest = await page(limit=2)
    assert [t["turn"] for t in latest["turns"]] == [2, 3]
    assert latest["turn_count"] == 3 and latest["next_before"] == 2
    oldest = await page(limit=2, before=latest["next_before"])
    assert [t["turn"] for t in oldest["turns"]] == [1] and oldest["next_before"] is None
    whole = await page()
    assert [t["turn"] for t in whole["turns"]] == [1, 2, 3] and whole["next_before"] is None
    for params in ({"limit": 0}, {"limit": 201}, {"before": 1}):
        response = await api.get(
            f"/v1/conversation/{session}", params=params, headers=bearer(token)
        )
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"


async def test_bad_step_requests_are_422(api: httpx.AsyncClient, token: Callable[..., str]) -> None:
    cases = [
        {"message": ""},
        {"message": "x" * 8001},
        {"message": "hi", "session_id": "has spaces"},
        {"message": "hi", "metadata": {"blob": "x" * 5000}},
        {"message": "hi", "extra": 1},
    ]
    for body in cases:
        response = await api.post("/v1/conversation/step", json=body, headers=bearer(token))
        assert response.status_code == 422, body
    long_key = await _step(api, token, _session(), "hi", **{"Idempotency-Key": "k" * 129})
    assert long_key.status_code == 422


async def test_turn_metrics_are_exposed(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    session = _session()
    assert (await _step(api, token, session, "How do I build a pipe bomb?")).status_code == 200
    events = await records_for_key(
        settings.kafka_bootstrap, settings.conversation_events_topic, session, bool
    )
    assert events
    metrics = (await api.get("/metrics")).text
    assert (
        'orchestrator_requests_total{decision="refused",route="/v1/conversation/step"}' in metrics
    )
    assert (
        'orchestrator_moderation_verdicts_total{category="weapons",decision="refuse",'
        'provider="rules",stage="input"}' in metrics
    )
    assert 'orchestrator_turn_duration_seconds_count{stage="total"}' in metrics
    async with httpx.AsyncClient() as http:
        worker = (await http.get(f"http://{settings.worker_metrics_address}/metrics")).text
    published = [
        line
        for line in worker.splitlines()
        if line.startswith("orchestrator_events_published_total")
        and 'outcome="published"' in line
        and f'topic="{settings.conversation_events_topic}"' in line
    ]
    assert published and float(published[0].rsplit(" ", 1)[1]) >= 1
