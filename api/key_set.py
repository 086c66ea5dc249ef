"""The identity provider's key set (ORCH_AUTH_JWKS_URL), fetched so that no token can make
the API wait on the provider, and no provider outage locks out a known key.

- The set is fetched again once it is `auth_jwks_cache_seconds` old, in the background:
  requests go on with the set in hand meanwhile. A token whose `kid` is not in it waits for
  that renewal, or forces a fetch at most once per `auth_jwks_refresh_seconds` (a key the
  provider has just rotated in), never once per token: a flood of tokens with made-up
  `kid`s costs one fetch per interval, not one per request.
- One fetch at a time (single flight). Only the first fetch and tokens with an unknown
  `kid` ever wait for one; a request whose key is in the set in hand never does.
- A failed fetch keeps the last good set (logged, and retried at the next interval): keys
  the provider published stay trusted through its outage, as they would for the cache's
  lifetime. Only before the first good fetch does a failure answer 503.

PyJWT's `PyJWKClient` fetches and parses the set; the policy above is ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import jwt
from jwt import PyJWK, PyJWKSet
from starlette.concurrency import run_in_threadpool

from core.errors import DependencyUnavailable, Unauthenticated

log = logging.getLogger("orchestrator.api")


class KeySet:
    def __init__(self, url: str, max_age_seconds: float, refresh_seconds: float) -> None:
        # PyJWKClient's own cache is off: its expiry drops the set when a fetch fails.
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=5)
        self._max_age = max_age_seconds
        self._refresh_interval = refresh_seconds
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None  # of the set in hand
        self._tried_at = float("-inf")  # the latest fetch, good or not
        self._fetching = asyncio.Lock()
        #: Fetches made (good or not), for the tests and the log.
        self.fetches = 0
        self._renewal: asyncio.Task[None] | None = None

    async def key(self, kid: str | None) -> PyJWK:
        """The provider's key `kid`; Unauthenticated when it has none such."""
        if self._stale():
            if self._fetched_at is None:  # no set yet: this request needs the first one
                await self._refresh(self._stale)
            elif self._renewal is None or self._renewal.done():
                # Renewed in the background: requests go on with the set in hand.
                self._renewal = asyncio.create_task(self._refresh(self._stale))
        found = self._keys.get(kid or "")
        if found is None and kid and self._renewal is not None and not self._renewal.done():
            await asyncio.shield(self._renewal)  # the renewed set may have it
            found = self._keys.get(kid)
        if found is None and kid:
            # Perhaps a key the provider has just rotated in: look again, at most once per
            # interval whatever the tokens say.
            await self._refresh(lambda: kid not in self._keys and self._may_force())
            found = self._keys.get(kid)
        if found is None:
            if self._fetched_at is None:
                raise DependencyUnavailable(
                    "The identity provider's keys (ORCH_AUTH_JWKS_URL) could not be fetched."
                )
            raise Unauthenticated(f"The bearer token was refused: no signing key {kid!r}.")
        return found

    def _stale(self) -> bool:
        """Due for a fetch: never fetched, or older than its lifetime (a failed fetch is
        tried again after the shorter of the lifetime and the refresh interval)."""
        since_try = time.monotonic() - self._tried_at
        if self._fetched_at is None:
            return since_try >= min(self._refresh_interval, 1)
        retry = min(self._max_age, self._refresh_interval)
        return time.monotonic() - self._fetched_at >= self._max_age and since_try >= retry

    def _may_force(self) -> bool:
        """May an unknown `kid` fetch the set now? Once per refresh interval at most."""
        return time.monotonic() - self._tried_at >= self._refresh_interval

    async def _refresh(self, still_needed: Callable[[], bool]) -> None:
        """Fetch the set, unless a fetch under way (waited for) made it needless."""
        async with self._fetching:
            if not still_needed():
                return
            self._tried_at = time.monotonic()
            self.fetches += 1
            try:
                data = await run_in_threadpool(self._client.fetch_data)
                keys = PyJWKSet.from_dict(data).keys
            except (jwt.PyJWKClientError, jwt.PyJWKSetError) as error:
                kept = "keeping the last good key set" if self._fetched_at else "no key set yet"
                log.warning("identity provider's keys not fetched (%s): %s", kept, error)
                return
            self._keys = {key.key_id: key for key in keys if key.key_id}
            self._fetched_at = time.monotonic()
