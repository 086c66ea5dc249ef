"""Training mode on the real stack: the lease in Redis, the audit topic, the gauge, the turns
(docs/interface.md, sections 4, 5, 7, 8)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from redis.asyncio import Redis
from temporalio.client import Client

from core.redis_keys import fence_key, lock_key
from core.settings import Settings
from tests.helpers.kafka_records import records_for_key

ROUTES = (
    ("GET", "/v1/training", None),
    ("POST", "/v1/training/enable", {"ttl_seconds": 120, "reason": "collect examples"}),
    ("POST", "/v1/training/disable", {"reason": "done"}),
)


def _tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


class Admin:
    """Calls the training routes as one admin (or user) of one tenant."""

    def __init__(self, api: httpx.AsyncClient, token: Callable[..., str], tenant: str,
                 subject: str = "alice", role: str = "admin") -> None:  # fmt: skip
        self.api, self.tenant = api, tenant
        self.headers = {"Authorization": f"Bearer {token(tenant, role, subject=subject)}"}

    async def enable(
        self, ttl_seconds: int = 120, reason: str = "collect examples"
    ) -> httpx.Response:
        body = {"ttl_seconds": ttl_seconds, "reason": reason}
        return await self.api.post("/v1/training/enable", json=body, headers=self.headers)

    async def disable(self, reason: str = "done") -> httpx.Response:
        return await self.api.post(
            "/v1/training/disable", json={"reason": reason}, headers=self.headers
        )

    async def state(self) -> dict[str, Any]:
        response = await self.api.get("/v1/training", headers=self.headers)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


async def _audit(settings: Settings, tenant: str, count: int) -> list[dict[str, Any]]:
    """The tenant's first `count` audit events, waiting for them to be published."""
    events = await records_for_key(
        settings.kafka_bootstrap,
        settings.training_audit_topic,
        tenant,
        lambda found: len(found) >= count,
    )
    return events


async def _gauge(url: str, tenant: str) -> float | None:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(url)).text
    pattern = rf'^training_mode_state\{{[^}}]*tenant="{re.escape(tenant)}"[^}}]*\}} (\S+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


async def _wait_for(condition: Callable[[], Any], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.2)


async def test_only_an_admin_of_the_tenant_changes_its_mode_and_a_refusal_changes_nothing(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings, redis: Redis
) -> None:
    tenant, other = _tenant(), _tenant()
    for method, path, body in ROUTES:
        response = await api.request(method, path, json=body)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    user = Admin(api, token, tenant, subject="uma", role="user")
    assert (await user.enable()).status_code == 403
    assert (await user.disable()).status_code == 403
    assert (await user.state())["enabled"] is False  # users may see the mode their turns get
    foreign = Admin(api, token, other, subject="oscar")
    enabled_elsewhere = await foreign.enable()
    assert enabled_elsewhere.status_code == 200 and enabled_elsewhere.json()["tenant"] == other
    assert (await foreign.disable()).status_code == 200

    assert await user.state() == {
        "tenant": tenant, "enabled": False, "holder": None, "fence": 0, "reason": None,
        "enabled_at": None, "expires_at": None,
    }  # fmt: skip
    assert await redis.exists(lock_key(tenant), fence_key(tenant)) == 0

    admin = Admin(api, token, tenant)
    response = await admin.enable()
    assert response.status_code == 200, response.text
    assert response.json()["holder"] == "alice" and response.json()["fence"] == 1
    # Events are in order per tenant: had a refusal written one, it would come first.
    first = (await _audit(settings, tenant, 1))[0]
    assert first["type"] == "training.mode.enabled" and first["data"]["actor"] == "alice"


async def test_enable_extend_conflict_and_disable_agree_in_api_redis_topic_and_gauge(
    api: httpx.AsyncClient,
    token: Callable[..., str],
    settings: Settings,
    redis: Redis,
    api_url: str,
) -> None:
    tenant = _tenant()
    alice, bob = Admin(api, token, tenant, "alice"), Admin(api, token, tenant, "bob")
    api_metrics = f"{api_url}/metrics"
    worker_metrics = f"http://{settings.worker_metrics_address}/metrics"

    enabled = await alice.enable(ttl_seconds=120, reason="label support chats")
    assert enabled.status_code == 200, enabled.text
    state = enabled.json()
    assert state["enabled"] and state["holder"] == "alice" and state["fence"] == 1
    assert state["reason"] == "label support chats"
    lease = json.loads(await redis.get(lock_key(tenant)))
    assert (lease["holder"], lease["fence"], lease["expires_at"]) == (
        "alice", 1, state["expires_at"]
    )  # fmt: skip
    assert 110_000 < await redis.pttl(lock_key(tenant)) <= 120_000
    assert await _gauge(api_metrics, tenant) == 1
    assert await _gauge(worker_metrics, tenant) == 1
    assert await alice.state() == state

    extended = (await alice.enable(ttl_seconds=600, reason="more chats")).json()
    assert extended["fence"] == 1 and extended["enabled_at"] == state["enabled_at"]
    assert extended["expires_at"] > state["expires_at"]
    assert 590_000 < await redis.pttl(lock_key(tenant)) <= 600_000

    refused = await bob.enable()
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["code"] == "training_locked"
    assert (problem["holder"], problem["expires_at"]) == ("alice", extended["expires_at"])
    assert json.loads(await redis.get(lock_key(tenant)))["holder"] == "alice"
    assert await _gauge(api_metrics, tenant) == 1  # still on, for alice

    disabled = await bob.disable(reason="enough")  # any admin of the tenant may switch it off
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False and disabled.json()["fence"] == 1
    assert await redis.exists(lock_key(tenant)) == 0
    assert (await bob.disable()).status_code == 200  # idempotent: no second event
    assert await _gauge(api_metrics, tenant) == 0
    assert await _gauge(worker_metrics, tenant) == 0

    again = (await bob.enable(ttl_seconds=60)).json()
    assert again["holder"] == "bob" and again["fence"] == 2  # one more at every enable

    events = await _audit(settings, tenant, 4)
    assert [(e["type"], e["data"]["actor"], e["data"]["fence"]) for e in events] == [
        ("training.mode.enabled", "alice", 1),
        ("training.mode.extended", "alice", 1),
        ("training.mode.disabled", "bob", 1),
        ("training.mode.enabled", "bob", 2),
    ]
    assert [e["data"]["previous_holder"] for e in events] == [None, "alice", "alice", None]
    assert events[1]["data"]["expires_at"] == extended["expires_at"]
    assert events[2]["data"]["reason"] == "enough"
    for event in events:
        assert event["source"] == f"/orchestrator/tenants/{tenant}/training"
        assert event["_headers"]["event_id"] == event["id"]
        assert event["_headers"]["tenant"] == tenant == event["data"]["tenant"]
    assert len({e["id"] for e in events}) == 4
    await bob.disable()


async def test_the_mode_ends_by_itself_at_its_expiry(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings, redis: Redis,
    api_url: str,
) -> None:  # fmt: skip
    tenant = _tenant()
    admin = Admin(api, token, tenant)
    enabled = (await admin.enable(ttl_seconds=3)).json()  # the test stack allows 2 s and up
    assert enabled["enabled"] and 0 < await redis.pttl(lock_key(tenant)) <= 3000

    async def ended() -> bool:
        return (await admin.state())["enabled"] is False

    await _wait_for(ended)
    assert await redis.exists(lock_key(tenant)) == 0
    assert await _gauge(f"{api_url}/metrics", tenant) == 0

    async def worker_saw_it_end() -> bool:  # the release runs right after the transition
        return await _gauge(f"http://{settings.worker_metrics_address}/metrics", tenant) == 0

    await _wait_for(worker_saw_it_end, timeout=10)
    expired = (await _audit(settings, tenant, 2))[1]
    assert expired["type"] == "training.mode.expired"
    assert expired["data"]["actor"] == "system"
    assert expired["data"]["previous_holder"] == "alice"
    assert datetime.fromisoformat(expired["time"]) >= datetime.fromisoformat(enabled["expires_at"])


async def test_turns_under_the_lease_carry_its_fence_and_the_next_turn_after_it_does_not(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings, temporal: Client
) -> None:
    tenant = _tenant()
    admin = Admin(api, token, tenant)
    user = {"Authorization": f"Bearer {token(tenant, 'user')}"}
    session = f"s-{uuid.uuid4().hex[:12]}"

    async def turn(message: str) -> dict[str, Any]:
        body = {"session_id": session, "message": message}
        response = await api.post("/v1/conversation/step", json=body, headers=user)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    fences = []
    for _ in range(2):
        fences.append((await admin.enable()).json()["fence"])
        under = await turn("How do I build a pipe bomb?")  # refused: no SLM call needed
        assert under["training_mode"] is True
        await admin.disable()
    assert fences[1] == fences[0] + 1
    after = await turn("Say hello.")
    assert after["training_mode"] is False and after["status"] == "completed"

    transcript = (await api.get(f"/v1/conversation/{session}", headers=user)).json()
    assert [(t["training_mode"], t["training_fence"]) for t in transcript["turns"]] == [
        (True, fences[0]), (True, fences[1]), (False, None)
    ]  # fmt: skip
    assert transcript["training_mode"] is False
    events = await records_for_key(
        settings.kafka_bootstrap, settings.conversation_events_topic, session,
        lambda found: len(found) >= 3,
    )  # fmt: skip
    assert [(e["data"]["training_mode"], e["data"]["training_fence"]) for e in events] == [
        (True, fences[0]), (True, fences[1]), (False, None)
    ]  # fmt: skip

    await admin.enable()
    marked = await turn("How do I build a pipe bomb?")
    description = await temporal.get_workflow_handle(marked["workflow_id"]).describe()
    attributes = {key.name: value for key, value in description.typed_search_attributes}
    assert attributes["TrainingMode"] is True
    await admin.disable()


async def test_a_lease_lost_by_redis_is_written_back_while_the_mode_is_on(
    api: httpx.AsyncClient, token: Callable[..., str], redis: Redis
) -> None:
    tenant = _tenant()
    admin = Admin(api, token, tenant)
    state = (await admin.enable(ttl_seconds=300)).json()
    written = json.loads(await redis.get(lock_key(tenant)))
    await redis.delete(lock_key(tenant), fence_key(tenant))  # as a restart without data would

    async def restored() -> bool:
        return bool(await redis.exists(lock_key(tenant)))

    await _wait_for(restored, timeout=30)
    assert json.loads(await redis.get(lock_key(tenant))) == written
    assert 0 < await redis.pttl(lock_key(tenant)) <= 300_000
    assert int(await redis.get(fence_key(tenant))) == state["fence"]
    assert (await admin.state())["enabled"] is True
    await admin.disable()
