"""The embedded stack: the four servers, then the worker and the API, started and stopped together.

`orchestrator dev` and the test fixtures both use this class: one way to start a service.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Callable
from pathlib import Path

from core import readiness
from core.clients import Clients
from core.settings import load_settings
from core.tokens import load_or_create_key
from deploy import services
from deploy.process import ManagedProcess, ServiceFailed
from deploy.services import DevPorts, Service

INFRASTRUCTURE = ("temporal", "kafka", "redis", "slm")
#: How often a start-up that is still waiting says so.
PROGRESS_SECONDS = 5.0
PRODUCT = ("worker", "api")


class EmbeddedStack:
    def __init__(
        self, data_dir: Path, ports: DevPorts, environment: dict[str, str] | None = None
    ) -> None:
        """`environment`: ORCH_ settings over the embedded defaults, for the worker and the API."""
        self.data_dir = data_dir
        self.ports = ports
        self.environment = {**services.dev_environment(data_dir, ports), **(environment or {})}
        self.settings = load_settings(**_as_settings(self.environment))
        self.processes: dict[str, ManagedProcess] = {}
        self._clients: Clients | None = None

    async def start(
        self,
        names: tuple[str, ...] = INFRASTRUCTURE + PRODUCT,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        """Start `names` (infrastructure first, then the product), each waited on until ready.

        `progress`, if given, hears each service start, become ready, and every few seconds
        which ones it still waits for. On any failure every service this stack started is
        stopped and ServiceFailed says which one failed and why, in one line.
        """
        started: list[str] = []
        try:
            planned = [self.service(name) for name in names]
            for service in planned:
                _check_ports_free(service)
            # The dev keys exist from the start, so an API or a worker started by hand on this
            # data dir (beside `orchestrator dev --services`) finds them.
            load_or_create_key(self.settings.signing_key_path, create=True)
            self._clients = self._clients or await Clients.open(self.settings)
            for group in (INFRASTRUCTURE, PRODUCT):
                batch = [s for s in planned if s.name in group]
                if not batch:
                    continue
                for service in batch:
                    self.processes[service.name] = ManagedProcess(service, self.data_dir / "logs")
                    started.append(service.name)
                    await self.processes[service.name].start()
                await _ready([self.processes[s.name] for s in batch], progress)
        except BaseException:
            await self.stop(tuple(started))
            raise

    async def stop(self, names: tuple[str, ...] | None = None) -> None:
        """Stop `names` (default: all), the product before the servers it depends on."""
        chosen = tuple(self.processes) if names is None else names
        for group in (PRODUCT, INFRASTRUCTURE):
            batch = [self.processes.pop(n) for n in chosen if n in group and n in self.processes]
            await asyncio.gather(*(process.stop() for process in batch))
        if not self.processes and self._clients is not None:
            await self._clients.close()
            self._clients = None

    async def first_exit(self) -> ManagedProcess:
        """Wait until one of the running processes exits, and return it."""
        waits = {asyncio.ensure_future(p.wait()): p for p in self.processes.values()}
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return waits[next(iter(done))]

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items() if p.pid is not None}

    def service(self, name: str) -> Service:
        settings, ports = self.settings, self.ports
        builders = {
            "temporal": lambda: Service(
                "temporal",
                services.temporal_argv(settings, ports),
                {"--temporal-port": ports.temporal, "--temporal-ui-port": ports.temporal_ui},
                self._temporal_ready,
            ),
            "kafka": lambda: Service(
                "kafka",
                services.kafka_argv(ports),
                {"--kafka-port": ports.kafka},
                lambda: self._check("kafka"),
            ),
            "redis": lambda: Service(
                "redis",
                services.redis_argv(settings, ports),
                {"--redis-port": ports.redis},
                lambda: self._check("redis"),
            ),
            "slm": lambda: Service(
                "slm",
                services.slm_argv(settings, ports),
                {"--slm-port": ports.slm},
                self._slm_ready,
                start_timeout=180,
                hint=services.SLM_CRASH_HINT,
            ),
            "worker": lambda: Service(
                "worker",
                services.product_argv("worker"),
                {"--worker-metrics-port": ports.worker_metrics},
                lambda: self._http_ok(f"http://{settings.worker_metrics_address}/readyz"),
                env=self.environment,
            ),
            "api": lambda: Service(
                "api",
                services.product_argv("api"),
                {"--api-port": ports.api},
                lambda: self._http_ok(f"{self.urls()['api_url']}/readyz"),
                env=self.environment,
            ),
        }
        return builders[name]()

    def urls(self) -> dict[str, str]:
        """The keys of dev.json (docs/interface.md, section 1)."""
        return {
            "api_url": f"http://127.0.0.1:{self.ports.api}",
            "temporal_address": self.settings.temporal_address,
            "temporal_ui_url": f"http://127.0.0.1:{self.ports.temporal_ui}",
            "kafka_bootstrap": self.settings.kafka_bootstrap,
            "redis_url": str(self.settings.redis_url),
            "slm_base_url": self.settings.slm_url,
            "data_dir": str(self.data_dir.resolve()),
        }

    async def _check(self, name: str) -> None:
        assert self._clients is not None
        result = await readiness.check(self._clients, name)
        if not result.ok:
            raise ServiceFailed(result.error or "not ready")

    async def _temporal_ready(self) -> None:
        await self._check("temporal")
        await self._http_ok(self.urls()["temporal_ui_url"])

    async def _slm_ready(self) -> None:
        """It lists its models and completes one short request: a server built for another
        CPU answers the first and dies on the second, which is a turn's first call."""
        await self._check("slm")
        assert self._clients is not None
        response = await self._clients.http.post(
            f"{self.settings.slm_url}/chat/completions",
            json={
                "model": self.settings.slm_model,
                "messages": [{"role": "user", "content": "Say OK."}],
                "max_tokens": 2,
            },
            timeout=60,
        )
        response.raise_for_status()
        if not response.json().get("choices"):
            raise ServiceFailed("its first completion has no choices")

    async def _http_ok(self, url: str) -> None:
        assert self._clients is not None
        response = await self._clients.http.get(url, timeout=5)
        response.raise_for_status()


async def _ready(processes: list[ManagedProcess], progress: Callable[[str], None] | None) -> None:
    """Wait for every process to be ready, telling `progress` how it goes."""
    began = time.monotonic()
    waiting = {p.service.name for p in processes}

    async def one(process: ManagedProcess) -> None:
        await process.wait_ready()
        waiting.discard(process.service.name)
        if progress:
            progress(f"  {process.service.name} ready ({time.monotonic() - began:.1f}s)")

    async def report() -> None:
        while True:
            await asyncio.sleep(PROGRESS_SECONDS)
            if progress and waiting:
                names = ", ".join(sorted(waiting))
                progress(f"  waiting for {names} ({time.monotonic() - began:.0f}s)")

    if progress:
        progress(f"starting {', '.join(p.service.name for p in processes)} ...")
    reporter = asyncio.create_task(report())
    try:
        await asyncio.gather(*(one(p) for p in processes))
    finally:
        reporter.cancel()


def _as_settings(environment: dict[str, str]) -> dict[str, str]:
    return {key.removeprefix("ORCH_").lower(): value for key, value in environment.items()}


def _check_ports_free(service: Service) -> None:
    for flag, port in service.ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the servers do: a port left in TIME_WAIT is free, only a listener is "in use".
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as error:
                reason = "in use" if error.errno == errno.EADDRINUSE else error.strerror
                raise ServiceFailed(
                    f"port {port} for {service.name} is {reason}; choose another with {flag}"
                ) from None
