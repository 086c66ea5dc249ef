"""Session fixtures: the real embedded stack (Temporal, Tansu, Valkey, llama.cpp, worker, API).

Started once per test session on free ports with the launcher's own code (EmbeddedStack),
so the tests exercise exactly what `orchestrator dev` runs, and only when a test asks for
it: every test that does (through any fixture) is marked `servers`, as is every module that
starts servers of its own, so `make test-unit` (`-m "not servers"`) runs the rest without
starting any.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from temporalio.client import Client
from temporalio.runtime import Runtime

from activities.redis_stream import TurnStreams
from activities.slm import SlmActivities
from activities.training_lock import TrainingLock
from core.admission import Admission
from core.connections import connect_temporal
from core.moderation.moderator import Moderator
from core.moderation.tenant_moderators import TenantModerators
from core.policy import load_policy
from core.settings import Settings
from core.tokens import mint_token
from core.usage import UsageLedger
from deploy.services import DevPorts
from deploy.stack import EmbeddedStack

TEST_MIN_TTL_SECONDS = 2


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "servers: needs the embedded servers (left out by `make test-unit`)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.servers)


@pytest_asyncio.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedStack]:
    embedded = EmbeddedStack(
        tmp_path_factory.mktemp("stack"),
        DevPorts.free(),
        {
            # Training leases of a few seconds, so expiry is seen through the real timer.
            "ORCH_TRAINING_MIN_TTL_SECONDS": str(TEST_MIN_TTL_SECONDS),
            # Every test calls from 127.0.0.1, and many send refused tokens on purpose: the
            # limit on refusals per address has its own tests (tests/test_jwks.py).
            "ORCH_AUTH_REFUSALS_PER_MINUTE": "0",
        },
    )
    await embedded.start()
    try:
        yield embedded
    finally:
        await embedded.stop()


@pytest.fixture(scope="session")
def settings(stack: EmbeddedStack) -> Settings:
    return stack.settings


@pytest.fixture(scope="session")
def api_url(stack: EmbeddedStack) -> str:
    return stack.urls()["api_url"]


@pytest_asyncio.fixture
async def api(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture(scope="session")
async def temporal(settings: Settings) -> Client:
    # As the API and the worker connect: with the payload codec, so results decode.
    return await connect_temporal(settings)


@pytest_asyncio.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client of the stack's Redis, answering strings."""
    client = Redis.from_url(str(settings.redis_url), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def slm_activities(settings: Settings, redis: Redis) -> Callable[..., SlmActivities]:
    """`slm_activities(policy_file)`: the SLM activities as a worker builds them, checking
    with that policy (the bundled one by default), on the stack's Redis and SLM server."""

    def make(policy_file: Path | None = None) -> SlmActivities:
        moderators = TenantModerators(Moderator.load(load_policy(policy_file)), redis)
        lock = TrainingLock(redis, Runtime.default().metric_meter)
        return SlmActivities(
            settings,
            moderators,
            TurnStreams(redis),
            Admission(lock.read_lease),
            UsageLedger(redis, settings.quota_window_seconds, Runtime.default().metric_meter),
        )

    return make


@pytest.fixture(scope="session")
def token(settings: Settings) -> Callable[..., str]:
    """`token("acme", "admin")`: a bearer token signed with the stack's dev key."""

    def make(tenant: str = "acme", role: str = "user", **claims: object) -> str:
        return mint_token(settings, tenant=tenant, roles=[role], **claims)  # type: ignore[arg-type]

    return make


@pytest.fixture
def run_cli() -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """Run `orchestrator ...` as a user would, with extra environment, and capture its output."""

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            check=False,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=Path(__file__).parent.parent,
        )

    yield run
