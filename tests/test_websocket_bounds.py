"""A conversation WebSocket is bounded (docs/api.md, WebSocket): sockets per token subject
and per process, and how long one lives left idle."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.settings import Settings
from tests.helpers.own_api import own_api


def _socket(base: str, token: str) -> connect:
    url = base.replace("http://", "ws://", 1) + "/v1/conversation/ws"
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"}, proxy=None)


async def test_sockets_past_a_subjects_cap_or_the_process_cap_are_refused_429(
    settings: Settings, token: Callable[..., str]
) -> None:
    bounded = settings.model_copy(update={"ws_max_per_subject": 2, "ws_max_per_process": 3})
    alice = token("acme", "user", subject=f"alice-{uuid.uuid4().hex[:6]}")
    bob = token("acme", "user", subject=f"bob-{uuid.uuid4().hex[:6]}")
    async with own_api(bounded) as base, AsyncExitStack() as open_sockets:
        for _ in range(2):
            await open_sockets.enter_async_context(_socket(base, alice))
        with pytest.raises(InvalidStatus) as refused:
            await open_sockets.enter_async_context(_socket(base, alice))
        assert refused.value.response.status_code == 429
        assert b"sockets of yours are open" in refused.value.response.body
        await open_sockets.enter_async_context(_socket(base, bob))  # another subject: fine
        with pytest.raises(InvalidStatus) as full:  # but the process holds 3 at most
            await open_sockets.enter_async_context(_socket(base, bob))
        assert full.value.response.status_code == 429
    # Closed sockets give their places back.
    async with own_api(bounded) as base:
        for _ in range(3):
            async with _socket(base, alice):
                pass


async def test_an_idle_socket_is_closed_with_4408(
    settings: Settings, token: Callable[..., str]
) -> None:
    idle = settings.model_copy(update={"ws_idle_timeout_seconds": 1.0})
    async with own_api(idle) as base, _socket(base, token("acme", "user")) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
    assert "idle" in closed.value.rcvd.reason
