"""Does each dependency answer? One check per system, used by `/readyz` and by the launcher.

A check really talks the system's protocol (gRPC health, PING, a Kafka bootstrap, the
OpenAI models route); an open port alone proves nothing. `/readyz` is unauthenticated, so
its answers are shared (`Readiness`): at most one round of checks per
`ORCH_READINESS_CACHE_SECONDS`, however often it is asked, and a failure is named by its
kind alone (the full reason, which names hosts and ports, goes to the log) unless
`ORCH_READINESS_ERROR_DETAIL` is set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient

from core.clients import Clients
from core.connections import kafka_options
from core.settings import DEPENDENCIES

log = logging.getLogger("orchestrator.readiness")


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    latency_ms: float
    #: The first line of the failure, at most 200 characters.
    error: str | None = None
    #: The failure's kind (its exception's class), which names no host.
    kind: str | None = None

    def public(self, detail: bool) -> dict[str, object]:
        """What an unauthenticated caller is shown: the kind of failure, or with `detail`
        its first line."""
        return {
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "error": self.error if detail else self.kind,
        }


async def _temporal(clients: Clients) -> None:
    if not await clients.temporal.service_client.check_health():
        raise RuntimeError("health check answered NOT_SERVING")


async def _redis(clients: Clients) -> None:
    await clients.redis.ping()


async def _kafka(clients: Clients) -> None:
    timeout_ms = int(clients.settings.readiness_timeout_seconds * 1000)
    admin = AIOKafkaAdminClient(**kafka_options(clients.settings), request_timeout_ms=timeout_ms)
    try:
        await admin.start()  # bootstraps: connects and reads the cluster metadata
    finally:
        await admin.close()


async def _slm(clients: Clients) -> None:
    response = await clients.http.get(f"{clients.settings.slm_url}/models")
    response.raise_for_status()


CHECKS: dict[str, Callable[[Clients], Awaitable[None]]] = {
    "temporal": _temporal,
    "redis": _redis,
    "kafka": _kafka,
    "slm": _slm,
}


async def check(clients: Clients, name: str) -> CheckResult:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(CHECKS[name](clients), clients.settings.readiness_timeout_seconds)
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"; the reason is reported
        kind = type(error).__name__
        reason = (str(error) or kind).splitlines()[0][:200]
        return CheckResult(False, _elapsed_ms(started), reason, kind)
    return CheckResult(True, _elapsed_ms(started))


assert tuple(CHECKS) == DEPENDENCIES


async def check_all(
    clients: Clients, names: tuple[str, ...] = DEPENDENCIES
) -> dict[str, CheckResult]:
    results = await asyncio.gather(*(check(clients, name) for name in names))
    return dict(zip(names, results, strict=True))


class Readiness:
    """The latest round of checks, shared by every caller for `max_age` seconds; one round
    at a time (callers that arrive during one wait for it)."""

    def __init__(
        self,
        run: Callable[[], Awaitable[dict[str, CheckResult]]],
        max_age: float,
    ) -> None:
        self._run = run
        self._max_age = max_age
        self._latest: tuple[float, dict[str, CheckResult]] | None = None
        self._running = asyncio.Lock()
        #: Rounds run, for the tests.
        self.rounds = 0

    async def results(self) -> dict[str, CheckResult]:
        async with self._running:
            if self._latest and time.monotonic() - self._latest[0] < self._max_age:
                return self._latest[1]
            self.rounds += 1
            results = await self._run()
            self._latest = (time.monotonic(), results)
            for name, result in results.items():  # what the answer leaves out, for operators
                if not result.ok:
                    log.warning("%s does not answer: %s", name, result.error)
            return results


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
