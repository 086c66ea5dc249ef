"""Does each dependency answer? One check per system, used by `/readyz` and by the launcher.

A check really talks the system's protocol (gRPC health, PING, a Kafka bootstrap, the
OpenAI models route); an open port alone proves nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient

from core.clients import Clients
from core.connections import kafka_options
from core.settings import DEPENDENCIES


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    latency_ms: float
    error: str | None = None


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
        reason = str(error) or type(error).__name__
        return CheckResult(False, _elapsed_ms(started), reason.splitlines()[0][:200])
    return CheckResult(True, _elapsed_ms(started))


assert tuple(CHECKS) == DEPENDENCIES


async def check_all(
    clients: Clients, names: tuple[str, ...] = DEPENDENCIES
) -> dict[str, CheckResult]:
    results = await asyncio.gather(*(check(clients, name) for name in names))
    return dict(zip(names, results, strict=True))


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
