"""Token quotas and usage: turns run until a tenant's quota would pass, then 429 with the
window's end; each turn counts once, as its event says (core/usage.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from core.settings import Settings
from tests.helpers.kafka_records import records_for_key
from tests.helpers.own_api import own_api
from tests.helpers.sse import events

#: Each turn reserves its worst case: this context budget and this longest reply.
BUDGET, REPLY = 256, 16


async def _events(settings: Settings, sessions: list[str]) -> list[dict[str, Any]]:
    found = []
    for session in sessions:
        found += [
            e
            for e in await records_for_key(
                settings.kafka_bootstrap, settings.conversation_events_topic, session, bool
            )
            if e["type"].startswith("conversation.turn.")
        ]
    return found


async def test_turns_run_until_the_token_quota_and_each_counts_once_as_its_event(
    token: Callable[..., str], settings: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    tenant, other = f"quota{run}", f"free{run}"
    limit = 3 * (BUDGET + REPLY)  # room for a few turns, as they use far less than that
    quoted = settings.model_copy(
        update={
            "context_token_budget": BUDGET,
            "max_reply_tokens": REPLY,
            "tenant_limits": {tenant: {"tokens_per_window": limit}},
        }
    )
    user = {"Authorization": f"Bearer {token(tenant, 'user')}"}
    admin = {"Authorization": f"Bearer {token(tenant, 'admin')}"}
    sessions: list[str] = []
    async with own_api(quoted) as url, httpx.AsyncClient(base_url=url, timeout=120) as api:
        key = f"k-{run}"
        refused = None
        for number in range(30):
            session = f"q-{run}-{number}"
            headers = {**user, "Idempotency-Key": key} if number == 0 else user
            step = await api.post(
                "/v1/conversation/step",
                json={"session_id": session, "message": "Name a colour."},
                headers=headers,
            )
            if step.status_code == 429:
                refused = step
                break
            assert step.status_code == 200, step.text
            sessions.append(session)
            if number == 0:  # the same request again: its first answer, counted once
                again = await api.post(
                    "/v1/conversation/step",
                    json={"session_id": session, "message": "Name a colour."},
                    headers=headers,
                )
                assert again.json() == step.json()
        assert refused is not None, "the quota never held a turn back"
        assert refused.json()["code"] == "quota_exceeded", refused.text
        wait = int(refused.headers["retry-after"])
        window = quoted.quota_window_seconds
        assert 0 < wait <= window
        assert len(sessions) >= 2  # turns ran until it would pass, not from the start

        report = (await api.get("/v1/usage", headers=admin)).json()
        # Nothing was started by the refused request; the others are in the report.
        events = await _events(settings, sessions)
        assert report["total"]["turns"] == len(events) == len(sessions)
        assert report["total"]["prompt_tokens"] == sum(
            e["data"]["usage"]["prompt_tokens"] for e in events
        )
        assert report["total"]["completion_tokens"] == sum(
            e["data"]["usage"]["completion_tokens"] for e in events
        )
        used = report["quota"]["tokens"]
        assert used["limit"] == limit
        assert used["used"] + BUDGET + REPLY > limit >= used["used"]
        mine = (await api.get("/v1/usage", headers=user)).json()
        assert mine["subject"] == f"{tenant}-user" and mine["total"] == report["total"]

        # Another tenant is not held back.
        elsewhere = await api.post(
            "/v1/conversation/step",
            json={"message": "Name a colour."},
            headers={"Authorization": f"Bearer {token(other, 'user')}"},
        )
        assert elsewhere.status_code == 200, elsewhere.text


async def test_usage_reports_by_day_and_by_subject_and_refuses_what_it_cannot_read(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    run = uuid.uuid4().hex[:8]
    tenant = f"report{run}"
    for subject in ("ann", "bob"):
        step = await api.post(
            "/v1/conversation/step",
            json={"message": "Name a fruit."},
            headers={"Authorization": f"Bearer {token(tenant, 'user', subject=subject)}"},
            timeout=120,
        )
        assert step.status_code == 200, step.text
    admin = {"Authorization": f"Bearer {token(tenant, 'admin')}"}
    today = dt.datetime.now(dt.UTC).date().isoformat()
    by_day = (await api.get("/v1/usage", params={"from": today}, headers=admin)).json()
    assert [g["key"] for g in by_day["groups"]] == [today] and by_day["total"]["turns"] == 2
    by_subject = (await api.get("/v1/usage", params={"group_by": "subject"}, headers=admin)).json()
    assert [(g["key"], g["turns"]) for g in by_subject["groups"]] == [("ann", 1), ("bob", 1)]
    ann = {"Authorization": f"Bearer {token(tenant, 'user', subject='ann')}"}
    assert (await api.get("/v1/usage", headers=ann)).json()["total"]["turns"] == 1
    refused = await api.get("/v1/usage", params={"subject": "bob"}, headers=ann)
    assert refused.status_code == 403
    backwards = await api.get("/v1/usage", params={"from": today, "to": "2020-01-01"}, headers=ann)
    assert backwards.status_code == 422


async def test_a_streamed_turn_counts_its_prompt_as_the_same_turn_whole(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    """The embedded server reports no usage in streams: the prompt is counted with its
    tokenizer, to the token the server reports for the same messages sent whole."""
    headers = {"Authorization": f"Bearer {token('acme', 'user')}"}
    body = {"message": "Name a colour of the sea."}
    whole = await api.post("/v1/conversation/step", json=body, headers=headers, timeout=120)
    assert whole.status_code == 200, whole.text
    async with api.stream(
        "POST", "/v1/conversation/stream", json=body, headers=headers, timeout=120
    ) as response:
        received = [e async for e in events(response)]
    ended = received[-1]
    assert ended.event == "turn.completed", ended
    prompt = whole.json()["usage"]["prompt_tokens"]
    assert prompt > 0 and ended.data["usage"]["prompt_tokens"] == prompt
