"""A tenant's own policy: stricter than the operator's for its turns only, never looser,
versioned, audited, and what POST /v1/moderations checks with (a candidate one too)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from openai import AsyncOpenAI

from core.settings import Settings
from tests.helpers.kafka_records import records_for_key

ZORBLAX = {
    "categories": {
        "cybercrime": {
            "rules": ["\\bzorblax\\b"],
            "message": "We do not discuss zorblax here.",
        },
        "violence": {"threshold": 0.4},
    }
}


def _bearer(token: Callable[..., str], tenant: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant, role)}"}


async def _step(api: httpx.AsyncClient, headers: dict[str, str], **extra: Any) -> httpx.Response:
    session = f"tp-{uuid.uuid4().hex[:10]}"
    return await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": "Tell me about zorblax."},
        headers={**headers, **extra},
        timeout=120,
    )


async def test_a_tenant_policy_refuses_more_for_its_tenant_only_and_never_less(
    api: httpx.AsyncClient, api_url: str, token: Callable[..., str], settings: Settings
) -> None:
    run = uuid.uuid4().hex[:8]
    tenant, other = f"initech{run}", f"hooli{run}"
    admin, user = _bearer(token, tenant, "admin"), _bearer(token, tenant, "user")
    before = (await api.get("/v1/policy", headers=user)).json()
    assert before["sequence"] == 0 and before["policy_version"] == before["floor_version"]
    floor = before["policy_version"]

    refused = await api.put("/v1/policy", json=ZORBLAX, headers=user)
    assert refused.status_code == 403, refused.text
    looser = {"categories": {"violence": {"threshold": 0.9}, "hate": {"rules": ["x"]}}}
    refused = await api.put("/v1/policy", json=looser, headers=admin)
    assert refused.status_code == 422 and refused.json()["code"] == "policy_loosens"
    assert refused.json()["loosens"] == [
        "categories.violence.threshold: 0.9 is above the operator's 0.57, which would refuse less"
    ]
    assert (await api.get("/v1/policy", headers=user)).json() == before
    for bad in (
        {"categories": {"violence": {"rules": ["(unclosed"]}}},
        {"categories": {"gossip": {"rules": ["x"]}}},
        {"categories": {}, "extra": 1},
    ):
        refused = await api.put("/v1/policy", json=bad, headers=admin)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["code"] == "validation_error", refused.text
    assert (await api.get("/v1/policy", headers=user)).json() == before

    changed = await api.put("/v1/policy", json=ZORBLAX, headers=admin)
    assert changed.status_code == 200, changed.text
    version = changed.json()["policy_version"]
    assert version == f"{floor}+{tenant}.1" and changed.json()["sequence"] == 1
    assert changed.json()["additions"]["categories"]["cybercrime"]["rules"] == ["\\bzorblax\\b"]
    assert (await api.get("/v1/policy", headers=user)).json() == changed.json()

    step = await _step(api, user)
    assert step.status_code == 200, step.text
    body = step.json()
    assert body["status"] == "refused" and body["reply"] == "We do not discuss zorblax here."
    assert body["verdict"]["category"] == "cybercrime" and body["verdict"]["provider"] == "rules"
    assert body["verdict"]["policy_version"] == version == step.headers["x-policy-version"]
    assert body["verdict"]["constitution_hash"] == changed.json()["constitution_hash"]
    allowed = await _step(api, _bearer(token, other, "user"))
    assert allowed.json()["status"] == "completed", allowed.text
    assert allowed.headers["x-policy-version"] == floor
    mismatch = await _step(api, user, **{"X-Policy-Version": floor})
    assert mismatch.status_code == 409 and mismatch.json()["policy_version"] == version

    events = await records_for_key(
        settings.kafka_bootstrap, settings.conversation_events_topic, body["session_id"], bool
    )
    assert events[0]["policyversion"] == version
    audit = await records_for_key(
        settings.kafka_bootstrap, settings.training_audit_topic, tenant, bool
    )
    assert audit[0]["type"] == "policy.changed" and audit[0]["data"]["policy_version"] == version
    assert audit[0]["data"]["actor"] == f"{tenant}-admin"

    # POST /v1/moderations checks with the tenant's policy; an admin may try a candidate.
    moderations = AsyncOpenAI(base_url=f"{api_url}/v1", api_key=token(tenant, "admin"))
    texts = ["Tell me about zorblax.", "Please frobnicate the widgets."]
    stored = await moderations.moderations.create(input=texts)
    assert [r.flagged for r in stored.results] == [True, False]
    stricter = {"categories": {"cybercrime": {"rules": ["\\bzorblax\\b", "\\bfrobnicate\\b"]}}}
    tried = await moderations.moderations.create(input=texts, extra_body={"policy": stricter})
    assert [r.flagged for r in tried.results] == [True, True]
    assert (await api.get("/v1/policy", headers=user)).json() == changed.json()
    elsewhere = AsyncOpenAI(base_url=f"{api_url}/v1", api_key=token(other, "user"))
    assert not (await elsewhere.moderations.create(input=texts[0])).results[0].flagged
