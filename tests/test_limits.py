"""Per-tenant limits (docs/api.md, Limits): over one, a 429 problem with Retry-After and
nothing started; a tenant over its limit does not hold back another.

The API is restarted once for this module with tight limits for three tenants of its own,
and a Redis pool of four connections.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest_asyncio
from temporalio.client import Client
from temporalio.service import RPCError

from deploy.stack import EmbeddedStack
from tests.helpers.auth import bearer

TIGHT = {
    "rate-limited": {"requests_per_second": 0.2, "burst": 3},
    "stream-limited": {"concurrent_streams": 1},
    "turn-limited": {"turns_in_flight_per_session": 1},
}
LONG = "Write a long story about a lighthouse keeper."
POOL = 4


@pytest_asyncio.fixture(scope="module")
async def limited_api(stack: EmbeddedStack) -> AsyncIterator[str]:
    original = dict(stack.environment)
    await stack.stop(("api",))
    stack.environment = {
        **original,
        "ORCH_TENANT_LIMITS": json.dumps(TIGHT),
        "ORCH_REDIS_MAX_CONNECTIONS": str(POOL),
    }
    await stack.start(("api",))
    try:
        yield stack.urls()["api_url"]
    finally:
        await stack.stop(("api",))
        stack.environment = original
        await stack.start(("api",))


def _assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "rate_limited" and body["status"] == 429
    assert int(response.headers["retry-after"]) == body["retry_after_seconds"] >= 1


async def test_a_tenant_over_its_rate_is_refused_and_starts_nothing(
    limited_api: str, token: Callable[..., str], temporal: Client
) -> None:
    async with httpx.AsyncClient(base_url=limited_api, timeout=30) as api:
        for _ in range(3):  # the burst
            assert (
                await api.get("/v1/whoami", headers=bearer(token, "rate-limited"))
            ).status_code == 200
        session = f"s-{uuid.uuid4().hex[:12]}"
        refused = await api.post(
            "/v1/conversation/step",
            json={"session_id": session, "message": "Hello."},
            headers=bearer(token, "rate-limited"),
        )
        _assert_limited(refused)
        assert "requests per second" in refused.json()["detail"]
        # Another tenant, at the same moment, is not held back.
        other = await api.get("/v1/whoami", headers=bearer(token, "acme"))
        assert other.status_code == 200
    handle = temporal.get_workflow_handle(f"conversation:rate-limited:{session}")
    try:
        await handle.describe()
        raise AssertionError("a refused request started a workflow")
    except RPCError as error:
        assert "not found" in str(error).lower()


async def test_a_tenant_with_its_streams_all_open_is_refused_another(
    limited_api: str, token: Callable[..., str]
) -> None:
    headers = bearer(token, "stream-limited")
    async with httpx.AsyncClient(base_url=limited_api, timeout=60) as api:
        first = {"session_id": f"s-{uuid.uuid4().hex[:12]}", "message": LONG}
        async with api.stream("POST", "/v1/chat/stream", json=first, headers=headers) as open_:
            assert open_.status_code == 200
            lines = open_.aiter_lines()
            assert (await anext(lines)).startswith("event: turn.accepted")
            second = {"session_id": f"s-{uuid.uuid4().hex[:12]}", "message": "Hi."}
            refused = await api.post("/v1/chat/stream", json=second, headers=headers)
            _assert_limited(refused)
            assert "streams open" in refused.json()["detail"]
            async for _ in lines:  # the first stream to its end gives its slot back
                pass
        again = await api.post(
            "/v1/conversation/step",
            json={"session_id": second["session_id"], "message": "Hi."},
            headers=headers,
        )
        assert again.status_code == 200, again.text
        async with api.stream("POST", "/v1/chat/stream", json=second, headers=headers) as later:
            assert later.status_code == 200
            async for _ in later.aiter_lines():
                pass


async def test_a_session_with_a_turn_in_flight_is_refused_a_second(
    limited_api: str, token: Callable[..., str]
) -> None:
    headers = bearer(token, "turn-limited")
    session = f"s-{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=limited_api, timeout=60) as api:
        body = {"session_id": session, "message": LONG}
        async with api.stream("POST", "/v1/chat/stream", json=body, headers=headers) as running:
            lines = running.aiter_lines()
            assert (await anext(lines)).startswith("event: turn.accepted")
            refused = await api.post(
                "/v1/conversation/step",
                json={"session_id": session, "message": "And then?"},
                headers=headers,
            )
            _assert_limited(refused)
            assert "turns in flight" in refused.json()["detail"]
            # Another session of the same tenant is not held back.
            elsewhere = await api.post(
                "/v1/conversation/step",
                json={"session_id": f"s-{uuid.uuid4().hex[:12]}", "message": "Hi."},
                headers=headers,
            )
            assert elsewhere.status_code == 200, elsewhere.text
            async for _ in lines:
                pass
        transcript = await api.get(f"/v1/conversation/{session}", headers=headers)
        assert [t["turn"] for t in transcript.json()["turns"]] == [1]


async def test_more_streams_than_redis_connections_all_reach_their_end(
    limited_api: str, token: Callable[..., str]
) -> None:
    """Each relay waits for its next event on a pooled connection: twice as many streams as
    the pool holds wait their turn for one, and none fails."""
    headers = bearer(token, "acme")

    async def streamed(api: httpx.AsyncClient) -> list[str]:
        body = {"session_id": f"s-{uuid.uuid4().hex[:12]}", "message": "Say hello."}
        async with api.stream("POST", "/v1/chat/stream", json=body, headers=headers) as stream:
            assert stream.status_code == 200, await stream.aread()
            return [line async for line in stream.aiter_lines() if line.startswith("event:")]

    async with httpx.AsyncClient(base_url=limited_api, timeout=120) as api:
        events = await asyncio.gather(*(streamed(api) for _ in range(2 * POOL)))
    assert all(kinds[-1] == "event: turn.completed" for kinds in events), events
