"""Redis down for 20 s under steady turns (docs/api.md, Limits; docs/operations.md): what
holds the training leases, the stream buffers and the limits is gone, and turns go on."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import httpx

from deploy.stack import EmbeddedStack
from tests.helpers.auth import bearer

OUTAGE_SECONDS = 20


async def test_redis_down_for_20_s_turns_go_on_and_everything_recovers(
    stack: EmbeddedStack, api_url: str, token: Callable[..., str]
) -> None:
    sessions = [f"r-{uuid.uuid4().hex[:10]}" for _ in range(2)]
    async with httpx.AsyncClient(base_url=api_url, timeout=120) as api:
        steps: list[httpx.Response] = []

        async def steady(session: str, until: float) -> None:
            while time.monotonic() < until:
                steps.append(
                    await api.post(
                        "/v1/conversation/step",
                        json={"session_id": session, "message": "Name a colour."},
                        headers=bearer(token, "redis-outage"),
                    )
                )

        await stack.stop(("redis",))
        try:
            outage_ends = time.monotonic() + OUTAGE_SECONDS
            load = asyncio.gather(*(steady(s, outage_ends) for s in sessions))
            streamed = await api.post(
                "/v1/chat/stream",
                json={"session_id": f"r-{uuid.uuid4().hex[:10]}", "message": "Hi."},
                headers=bearer(token, "redis-outage"),
            )
            enable = await api.post(
                "/v1/training/enable",
                json={"ttl_seconds": 60, "reason": "during the outage"},
                headers=bearer(token, "redis-outage", "admin"),
            )
            await load
        finally:
            await stack.start(("redis",))

        # Non-streamed turns kept completing, each session's in order, none stuck.
        assert steps and {s.status_code for s in steps} == {200}, [
            s.text for s in steps if s.status_code != 200
        ]
        for session in sessions:
            turns = [s.json()["turn"] for s in steps if s.json()["session_id"] == session]
            assert turns == list(range(1, len(turns) + 1))
        # A streamed turn needs Redis for its buffer: refused at once, nothing started.
        assert streamed.status_code == 503, streamed.text
        assert streamed.json()["dependency"] == "redis"
        assert enable.status_code == 503 and enable.json()["dependency"] == "redis"

        # After recovery: all of it works, and no lease is held by nobody.
        training = await api.get("/v1/training", headers=bearer(token, "redis-outage", "admin"))
        assert training.status_code == 200 and training.json()["enabled"] is False
        again = await api.post(
            "/v1/training/enable",
            json={"ttl_seconds": 60, "reason": "after the outage"},
            headers=bearer(token, "redis-outage", "admin"),
        )
        assert again.status_code == 200, again.text
        async with api.stream(
            "POST",
            "/v1/chat/stream",
            json={"session_id": sessions[0], "message": "And another?"},
            headers=bearer(token, "redis-outage"),
        ) as response:
            assert response.status_code == 200
            lines = [line async for line in response.aiter_lines()]
        assert "event: turn.completed" in lines
        disabled = await api.post(
            "/v1/training/disable",
            json={"reason": "test over"},
            headers=bearer(token, "redis-outage", "admin"),
        )
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
