"""The API's Prometheus metrics (docs/interface.md, section 8), defined once per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from redis.asyncio import Redis

from core.redis_keys import TENANTS_KEY, lock_key
from core.settings import ConfigurationError, Settings

log = logging.getLogger("orchestrator.api")

REQUESTS = Counter(
    "orchestrator_requests_total",
    "HTTP requests by route template and decision.",
    ["route", "decision"],
)
REQUEST_DURATION = Histogram(
    "orchestrator_request_duration_seconds",
    "HTTP request duration by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def decision_for(status: int) -> str:
    """The default decision label; a route that knows better sets `request.state.decision`."""
    if status < 400:
        return "allowed"
    if status in (401, 403):
        return "unauthorized"
    if status < 500:
        return "rejected"
    return "error"


TURN_DURATION = Histogram(
    "orchestrator_turn_duration_seconds",
    "Turn duration by stage: input_moderation, slm, output_moderation, "
    "and total (as the API saw it).",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
MODERATION_VERDICTS = Counter(
    "orchestrator_moderation_verdicts_total",
    "Moderation checks by stage, category (none when allowed), decision and the layer that "
    "refused (rules, classifier, guard:<name>; none when allowed).",
    ["stage", "category", "decision", "provider"],
)
SLM_TIME_TO_FIRST_TOKEN = Histogram(
    "orchestrator_slm_time_to_first_token_seconds",
    "Streamed turns: from the API receiving the request to the first token sent to the client.",
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
STREAM_LAG = Histogram(
    "orchestrator_stream_lag_seconds",
    "Streamed turns: from an event's append to its Redis Stream to its relay to a client.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
)
DEPENDENCY_READY = Gauge(
    "orchestrator_dependency_ready",
    "1 when the dependency answered the last readiness check (GET /readyz), else 0.",
    ["dependency"],
)
TRAINING_MODE_STATE = Gauge(
    "training_mode_state",
    "1 while the tenant's training mode is on (its lease is live in Redis), else 0.",
    ["tenant"],
)


async def refresh_training_state(redis: Redis, timeout: float) -> None:
    """Read every tenant's lease at scrape time, so the gauge also follows expiries.

    Redis unreachable: the last values stay, and /metrics still answers.
    """
    try:
        async with asyncio.timeout(timeout):
            members = await redis.smembers(TENANTS_KEY)
            tenants = sorted(m.decode() if isinstance(m, bytes) else m for m in members)
            async with redis.pipeline(transaction=False) as pipe:
                for tenant in tenants:
                    pipe.exists(lock_key(tenant))
                live = await pipe.execute()
    except Exception as error:  # noqa: BLE001 - a scrape must not fail on Redis
        log.warning("training_mode_state not refreshed: %s", error)
        return
    for tenant, exists in zip(tenants, live, strict=True):
        TRAINING_MODE_STATE.labels(tenant=tenant).set(1 if exists else 0)


class MetricsListener:
    """/metrics on its own address (ORCH_METRICS_ADDRESS), off the public port.

    prometheus_client serves it from a thread, which cannot read Redis at scrape time, so
    the training gauge is refreshed every `REFRESH_SECONDS` instead.
    """

    REFRESH_SECONDS = 5.0

    def __init__(self, settings: Settings, redis: Redis) -> None:
        address, timeout = settings.metrics_address, settings.readiness_timeout_seconds
        host, _, port = address.rpartition(":")
        try:
            self._server, _ = start_http_server(int(port), host)
        except OSError as error:
            raise ConfigurationError(
                f"ORCH_METRICS_ADDRESS: cannot listen on {address}: {error}"
            ) from None
        self._refresh = asyncio.create_task(self._refresh_forever(redis, timeout))

    async def _refresh_forever(self, redis: Redis, timeout: float) -> None:
        while True:
            await refresh_training_state(redis, timeout)
            await asyncio.sleep(self.REFRESH_SECONDS)

    async def close(self) -> None:
        self._refresh.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._refresh
        self._server.shutdown()
        self._server.server_close()
