"""What bounds a conversation WebSocket (docs/api.md, WebSocket): how many are open, of one
token subject and of the process, and how long one lives, until its token expires or it
has been idle for `ws_idle_timeout_seconds`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from api.auth import Principal
from core.errors import RateLimited
from core.settings import Settings

#: The close codes of a socket that outlived its token, and of one left idle.
CLOSE_EXPIRED = 1008
CLOSE_IDLE = 4408


class OpenSockets:
    """The conversation WebSockets open in this process, by token subject."""

    def __init__(self, settings: Settings) -> None:
        self._per_subject = settings.ws_max_per_subject
        self._per_process = settings.ws_max_per_process
        self._open: Counter[str] = Counter()

    @contextmanager
    def held(self, principal: Principal) -> Iterator[None]:
        """One more socket of `principal`'s while the block runs; RateLimited past a cap."""
        key = f"{principal.tenant}/{principal.subject}"
        if self._open[key] >= self._per_subject:
            raise RateLimited(
                f"{self._per_subject} conversation sockets of yours are open; close one, or "
                "send turns on one you have.",
                retry_after_seconds=1,
            )
        if self._open.total() >= self._per_process:
            raise RateLimited(
                "This API process has all the conversation sockets it takes open; retry in a "
                "moment (another replica may take it).",
                retry_after_seconds=1,
            )
        self._open[key] += 1
        try:
            yield
        finally:
            self._open[key] -= 1
            if not self._open[key]:
                del self._open[key]


class Lifetime:
    """When a socket must close: at its token's expiry, or once idle for `idle` seconds
    (nothing received from the client, nothing sent to it)."""

    def __init__(self, expires_at: float | None, idle: float) -> None:
        self._expires_at = expires_at
        self._idle = idle
        self._active_at = time.monotonic()

    def touch(self) -> None:
        self._active_at = time.monotonic()

    async def ended(self) -> tuple[int, str]:
        """Wait until the socket must close; its close code and reason."""
        while True:
            idle_left = self._active_at + self._idle - time.monotonic()
            expiry_left = (
                self._expires_at - time.time() if self._expires_at is not None else float("inf")
            )
            if expiry_left <= 0:
                return CLOSE_EXPIRED, "token expired; reconnect with a new token"
            if idle_left <= 0:
                return CLOSE_IDLE, f"idle for {self._idle:g} s; reconnect when needed"
            await asyncio.sleep(min(idle_left, expiry_left))
