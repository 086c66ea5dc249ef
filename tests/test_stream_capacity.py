"""An API process relays at most `ORCH_STREAMS_PER_PROCESS` streams at once; past it, a new
stream is refused with 503 and Retry-After, and a stream that ends gives its place back."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx

from core.settings import Settings
from tests.helpers.auth import bearer
from tests.helpers.own_api import own_api


async def test_a_stream_past_the_process_cap_is_refused_503_until_one_ends(
    settings: Settings, token: Callable[..., str]
) -> None:
    one = settings.model_copy(update={"streams_per_process": 1})
    body = {"message": "Count from 1 to 60, one number per line."}
    async with own_api(one) as base, httpx.AsyncClient(base_url=base, timeout=120) as api:
        session = f"cap-{uuid.uuid4().hex[:8]}"
        async with api.stream(
            "POST",
            "/v1/conversation/stream",
            json={**body, "session_id": session},
            headers=bearer(token),
        ) as first:
            assert first.status_code == 200
            lines = first.aiter_lines()
            assert (await anext(lines)).startswith("event: turn.accepted")
            refused = await api.post(
                "/v1/conversation/stream",
                json={**body, "session_id": f"cap-{uuid.uuid4().hex[:8]}"},
                headers=bearer(token),
            )
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert "streams, its most" in refused.json()["detail"]
            async for _ in lines:  # the first turn to its end
                pass
        again = await api.post(
            "/v1/conversation/stream",
            json={"message": "Say hi.", "session_id": f"cap-{uuid.uuid4().hex[:8]}"},
            headers=bearer(token),
        )
        assert again.status_code == 200, again.text
        assert "event: turn.completed" in again.text
