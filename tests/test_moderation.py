"""Moderation through the real step route: refusals by layer, multi-turn, personal data."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from temporalio.client import Client

from core.policy import load_policy
from core.settings import Settings
from tests.helpers.auth import bearer
from tests.helpers.kafka_records import records_for_key
from tests.helpers.requests import CATEGORY_REQUESTS, CLASSIFIER_ONLY, SPLIT_REQUEST


async def _step(
    api: httpx.AsyncClient, token: Callable[..., str], session: str, message: str
) -> httpx.Response:
    response = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": message},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("category", sorted(CATEGORY_REQUESTS))
async def test_every_category_is_refused_at_input(
    api: httpx.AsyncClient, token: Callable[..., str], category: str
) -> None:
    # That a refused input never reaches the SLM server: test_conversation_durability.py.
    policy = load_policy(None)  # the stack's worker runs the bundled policy
    response = await _step(api, token, f"cat-{uuid.uuid4().hex[:10]}", CATEGORY_REQUESTS[category])
    body = response.json()
    assert body["status"] == "refused"
    assert (body["verdict"]["stage"], body["verdict"]["category"]) == ("input", category)
    assert body["reply"] == policy.message(category)
    assert response.headers["x-policy-verdict"] == "refuse"
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}


async def test_a_classifier_refusal_agrees_everywhere(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings
) -> None:
    session = f"clf-{uuid.uuid4().hex[:10]}"
    response = await _step(api, token, session, CLASSIFIER_ONLY)
    verdict = response.json()["verdict"]
    assert (verdict["decision"], verdict["provider"]) == ("refuse", "classifier")
    assert verdict["category"] == "self_harm" and 0 < verdict["score"] <= 1
    assert verdict["basis"] == "message"  # the message alone was enough
    assert response.headers["x-policy-verdict"] == "refuse"
    events = await records_for_key(
        settings.kafka_bootstrap, settings.conversation_events_topic, session, bool
    )
    assert events[0]["data"]["verdict"] == verdict
    assert events[0]["_headers"]["policy_verdict"] == "refuse"
    transcript = (await api.get(f"/v1/conversation/{session}", headers=bearer(token))).json()
    assert transcript["turns"][0]["verdict"] == verdict
    metrics = (await api.get("/metrics")).text
    assert (
        'orchestrator_moderation_verdicts_total{category="self_harm",decision="refuse",'
        'provider="classifier",stage="input"}'
    ) in metrics


async def test_a_request_split_over_two_turns_is_refused_on_the_second(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    first, second = SPLIT_REQUEST
    alone = await _step(api, token, f"alone-{uuid.uuid4().hex[:10]}", second)
    assert alone.json()["status"] == "completed", "the second message alone is allowed"
    session = f"split-{uuid.uuid4().hex[:10]}"
    assert (await _step(api, token, session, first)).json()["status"] == "completed"
    refused = (await _step(api, token, session, second)).json()
    verdict = refused["verdict"]
    assert (verdict["decision"], verdict["stage"]) == ("refuse", "input")
    # Which turn, which layer, and that the conversation was the reason.
    assert refused["turn"] == 2
    assert (verdict["provider"], verdict["basis"]) == ("classifier", "conversation")


async def test_personal_data_is_kept_out_of_history_events_and_transcript(
    api: httpx.AsyncClient, token: Callable[..., str], temporal: Client, settings: Settings
) -> None:
    email = f"canary-{uuid.uuid4().hex[:8]}@example.com"
    card = "4111 1111 1111 1111"
    session = f"pii-{uuid.uuid4().hex[:10]}"
    message = f"My email is {email} and my card {card} was charged twice. What should I do?"
    body = (await _step(api, token, session, message)).json()
    assert body["status"] == "completed" and body["reply"]
    history = await temporal.get_workflow_handle(body["workflow_id"]).fetch_history()
    raw = history.to_json()
    events = await records_for_key(
        settings.kafka_bootstrap, settings.conversation_events_topic, session, bool
    )
    transcript = (await api.get(f"/v1/conversation/{session}", headers=bearer(token))).text
    for place, text in [("history", raw), ("event", str(events)), ("transcript", transcript)]:
        for canary in (email, card, card.replace(" ", "")):
            assert canary not in text, f"{canary} found in the {place}"
    assert "[EMAIL]" in transcript and "[CARD_NUMBER]" in transcript
    assert events[0]["data"]["message"].startswith("My email is [EMAIL] and my card [CARD_NUMBER]")


async def test_personal_data_in_metadata_and_feedback_is_redacted_like_a_message(
    api: httpx.AsyncClient, token: Callable[..., str], temporal: Client, settings: Settings
) -> None:
    email = f"canary-{uuid.uuid4().hex[:8]}@example.com"
    session = f"pii-{uuid.uuid4().hex[:10]}"
    step = await api.post(
        "/v1/conversation/step",
        json={
            "session_id": session,
            "message": "Say hi.",
            "metadata": {"contact": f"mail {email}", "tags": [email], email: 1},
        },
        headers=bearer(token),
    )
    assert step.status_code == 200, step.text
    feedback = await api.post(
        f"/v1/conversation/{session}/feedback",
        json={"turn": 1, "rating": 1, "comment": f"reach me at {email}"},
        headers=bearer(token),
    )
    assert feedback.status_code == 202, feedback.text
    events = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: any(e["type"] == "conversation.feedback" for e in found),
    )
    raw = (
        await temporal.get_workflow_handle(f"conversation:acme:{session}").fetch_history()
    ).to_json()
    transcript = (await api.get(f"/v1/conversation/{session}", headers=bearer(token))).json()
    for place, text in [("history", raw), ("event", str(events)), ("transcript", str(transcript))]:
        assert email not in text, f"the address is in the {place}"
    assert transcript["turns"][0]["metadata"] == {
        "contact": "mail [EMAIL]",
        "tags": ["[EMAIL]"],
        "[EMAIL]": 1,
    }
    (given,) = [e for e in events if e["type"] == "conversation.feedback"]
    assert given["data"]["comment"] == "reach me at [EMAIL]"
