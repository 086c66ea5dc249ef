"""The embedded SLM's speed by build: the portable llama.cpp build (deploy/llama_build.py) on
the CPU variant it chooses here and on the AVX2 baseline (`haswell`), against a native
`-march=native` build of the same version, in one run.

Every server runs at once on its own port (idle ones cost no CPU), and the requests rotate
through them one at a time, so drift on the machine falls on all alike. Each request is
the turn benchmark's direct SLM call (the same messages and sampling as a turn) with a
fixed seed; the figure is completion tokens per second of the whole request.

    python3 deploy/llama_build.py --flavour native --python /tmp/native/bin/python
    /tmp/native/bin/pip install -c requirements-dev.lock 'llama-cpp-python[server]'
    python -m bench slm --native /tmp/native/bin/python
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench.chat import chat_body
from bench.harness import percentile, rotated
from core.settings import load_settings
from deploy import services, slm_server
from deploy.process import ManagedProcess
from deploy.services import Service, free_ports

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "bench" / "results" / "slm_builds.json"
MODEL = "SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class Server:
    label: str
    python: str
    variant: str


def servers(native: str | None) -> list[Server]:
    chosen = slm_server.choose_for_machine().name or "auto"
    found = [Server(f"portable, {chosen} (auto)", sys.executable, "auto")]
    if chosen != "haswell":
        found.append(Server("portable, haswell (AVX2)", sys.executable, "haswell"))
    if native:
        found.append(Server("native (-march=native)", native, "auto"))
    return found


def _argv(server: Server, port: int) -> list[str]:
    """The server `orchestrator dev` starts, with another Python and CPU variant."""
    argv = services.slm_argv(load_settings(), services.DevPorts(slm=port))
    argv[0] = server.python
    argv[argv.index("--cpu-variant") + 1] = server.variant
    return argv


async def run(native: str | None, requests: int, max_tokens: int) -> dict[str, Any]:
    chosen = servers(native)
    ports = free_ports(len(chosen))
    logs = Path(tempfile.mkdtemp(prefix="bench-slm-"))
    running: list[ManagedProcess] = []
    async with httpx.AsyncClient(timeout=300) as http:

        async def ready(port: int) -> None:
            (await http.get(f"http://127.0.0.1:{port}/v1/models")).raise_for_status()

        def call(port: int) -> Any:
            body = chat_body(MODEL, max_tokens=max_tokens, seed=7)

            async def one() -> tuple[float, int]:
                began = time.perf_counter()
                response = await http.post(
                    f"http://127.0.0.1:{port}/v1/chat/completions", json=body
                )
                response.raise_for_status()
                tokens = int(response.json()["usage"]["completion_tokens"])
                return time.perf_counter() - began, tokens

            return one

        try:
            for server, port in zip(chosen, ports, strict=True):
                service = Service(
                    "slm", _argv(server, port), {}, partial(ready, port), start_timeout=180
                )
                process = ManagedProcess(service, logs / str(port))
                running.append(process)
                await process.start()
                await process.wait_ready()
            calls = {s.label: call(port) for s, port in zip(chosen, ports, strict=True)}
            await rotated(calls, 2)  # warm-up: caches, the first evaluation
            samples = await rotated(calls, requests)
        finally:
            await asyncio.gather(*(process.stop() for process in running))
    return _summary(samples, max_tokens)


def _summary(samples: dict[str, list[tuple[float, int]]], max_tokens: int) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for label, taken in samples.items():
        rates = [tokens / seconds for seconds, tokens in taken]
        rows[label] = {
            "tokens_per_second_p50": percentile(rates, 0.5),
            "seconds_p50": percentile([s for s, _ in taken], 0.5),
            "completion_tokens_p50": percentile([float(t) for _, t in taken], 0.5),
            "requests": len(taken),
        }
    baseline = next((label for label in rows if label.startswith("native")), next(iter(rows)))
    for row in rows.values():
        row["ratio_to_" + baseline.split(" ")[0]] = (
            row["tokens_per_second_p50"] / rows[baseline]["tokens_per_second_p50"]
        )
    return {"max_tokens": max_tokens, "baseline": baseline, "servers": rows}


def report(results: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    ratio = "ratio_to_" + results["baseline"].split(" ")[0]
    print(f"\n{'server':36}{'tokens/s p50':>14}{'s p50':>8}{'tokens':>8}{'ratio':>8}")
    for label, row in results["servers"].items():
        print(
            f"{label:36}{row['tokens_per_second_p50']:>14.1f}{row['seconds_p50']:>8.2f}"
            f"{row['completion_tokens_p50']:>8.0f}{row[ratio]:>8.2f}"
        )
    print(f"\nratio: to {results['baseline']}; written to {RESULTS}")
