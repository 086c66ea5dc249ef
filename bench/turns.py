"""One conversation turn through the API against the same completion sent straight to the SLM.

Starts the embedded stack (`EmbeddedStack`, as `orchestrator dev` does) on free ports in a
temporary data dir, then measures sequential latency and throughput at a fixed concurrency.
Three paths take turns, so all see the same machine: the API turn, the direct completion,
and the floor (`bench.floor`: Temporal alone, in the turn's shape). Everything talks to
127.0.0.1.

Orchestration overhead is measured two ways: within each turn (its latency minus its own
SLM call, which the API reports in Server-Timing), and pairwise (a turn minus the direct
call next to it, which also carries the spread of two separate generations).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from temporalio.client import Client

from bench import floor, phases
from bench.chat import MAX_TOKENS, PROMPT, chat_body
from core.connections import connect_temporal
from core.tokens import mint_token
from deploy.services import DevPorts
from deploy.stack import EmbeddedStack

WARM_UP = 3
TIME_LIMIT_SECONDS = 15 * 60
RESULTS = Path(__file__).parent / "results" / "turns.json"

T = TypeVar("T")
#: A target: its name, the measured value, the goal as text, and whether it was met.
Target = tuple[str, float, str, bool]


@dataclass(frozen=True)
class Sample:
    seconds: float
    completion_tokens: int
    #: The part of `seconds` spent in the SLM call itself.
    slm_seconds: float
    #: API turns: the workflow run and wall-clock times, to read the phases from history.
    trace: phases.TurnTrace | None = None

    @property
    def overhead(self) -> float:
        return self.seconds - self.slm_seconds


class Paths:
    """Three ways to get one reply: a conversation turn, the bare completion, the floor."""

    def __init__(
        self, http: httpx.AsyncClient, temporal: Client, stack: EmbeddedStack, token: str
    ) -> None:
        urls = stack.urls()
        self._http, self.temporal = http, temporal
        self._step_url = f"{urls['api_url']}/v1/conversation/step"
        self.chat_url = f"{urls['slm_base_url']}/chat/completions"
        self._auth = {"Authorization": f"Bearer {token}"}
        self._chat = chat_body(stack.settings.slm_model)

    async def api(self) -> Sample:
        body = {"session_id": f"bench-{uuid.uuid4().hex}", "message": PROMPT}
        sent, started = time.time(), time.perf_counter()
        response = await self._http.post(self._step_url, json=body, headers=self._auth)
        elapsed = time.perf_counter() - started
        received = time.time()
        response.raise_for_status()
        turn = response.json()
        if turn["status"] != "completed":
            raise RuntimeError(f"the API turn ended {turn['status']}: {turn['verdict']}")
        stages = dict(part.split(";dur=") for part in response.headers["server-timing"].split(", "))
        slm_seconds = float(stages["slm"]) / 1000
        trace = phases.TurnTrace(turn["workflow_id"], turn["run_id"], sent, received, slm_seconds)
        return Sample(elapsed, int(turn["usage"]["completion_tokens"]), slm_seconds, trace)

    async def direct(self) -> Sample:
        started = time.perf_counter()
        response = await self._http.post(self.chat_url, json=self._chat)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return Sample(elapsed, int(response.json()["usage"]["completion_tokens"]), elapsed)

    async def floor(self) -> Sample:
        started = time.perf_counter()
        reply = await floor.complete(self.temporal, self._chat)
        elapsed = time.perf_counter() - started
        return Sample(elapsed, reply.completion_tokens, reply.slm_seconds)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    return {f"p{int(q * 100)}": percentile(values, q) * scale for q in (0.5, 0.9, 0.99)}


async def rotated(
    calls: Mapping[str, Callable[[], Awaitable[T]]], rounds: int
) -> dict[str, list[T]]:
    """`rounds` of one request per path, the order rotating, so no path always goes first."""
    samples: dict[str, list[T]] = {name: [] for name in calls}
    order = list(calls)
    for _ in range(rounds):
        for name in order:
            samples[name].append(await calls[name]())
        order = order[1:] + order[:1]
    return samples


async def where_it_goes(temporal: Client, api: list[Sample]) -> dict[str, dict[str, float]]:
    """Per phase of the API turns (`bench.phases`), its spread in ms."""
    measured = [await phases.phases(temporal, s.trace) for s in api if s.trace is not None]
    return {name: spread([m[name] for m in measured], scale=1.0) for name in phases.PHASES}


async def sequential(paths: Paths, rounds: int) -> dict[str, Any]:
    """`rounds` of one request per path (`rotated`)."""
    calls = {"api": paths.api, "direct": paths.direct, "floor": paths.floor}
    samples = await rotated(calls, rounds)
    api, direct = samples["api"], samples["direct"]
    matched = list(zip(api, direct, strict=True))
    # Per completion token, so a path that happened to write shorter replies gains nothing.
    per_token = [
        a.seconds / max(a.completion_tokens, 1) - d.seconds / max(d.completion_tokens, 1)
        for a, d in matched
    ]
    latency = {name: spread([s.seconds for s in taken]) for name, taken in samples.items()}
    return {
        "requests_per_path": rounds,
        "latency_ms": latency,
        "tokens_mean": {
            name: statistics.fmean(s.completion_tokens for s in taken)
            for name, taken in samples.items()
        },
        "median_ratio": latency["api"]["p50"] / latency["direct"]["p50"],
        "overhead_ms": spread([s.overhead for s in api]),
        "floor_overhead_ms": spread([s.overhead for s in samples["floor"]]),
        "pairwise_overhead_ms": spread([a.seconds - d.seconds for a, d in matched]),
        "pairwise_overhead_per_token_ms": spread(per_token),
        "phases_ms": await where_it_goes(paths.temporal, api),
    }


async def throughput(call: Callable[[], Awaitable[Sample]], count: int, concurrency: int) -> float:
    """Requests per second for `count` requests, at most `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> Sample:
        async with gate:
            return await call()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


async def measure(
    stack: EmbeddedStack, requests: int, concurrency: int, count: int
) -> dict[str, Any]:
    token = user_token(stack)
    settings = stack.settings
    temporal = await connect_temporal(settings)
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        paths = Paths(http, temporal, stack, token)
        async with floor.serving(temporal, http, paths.chat_url):
            for _ in range(WARM_UP):
                await paths.api()
                await paths.direct()
                await paths.floor()
            results = await sequential(paths, requests)
        direct_rps = await throughput(paths.direct, count, concurrency)
        api_rps = await throughput(paths.api, count, concurrency)
    results["throughput"] = {
        "concurrency": concurrency,
        "requests_per_path": count,
        "api_rps": api_rps,
        "direct_rps": direct_rps,
        "ratio": api_rps / direct_rps,
    }
    return results


def user_token(stack: EmbeddedStack) -> str:
    return mint_token(stack.settings, tenant="bench", roles=["user"])


def targets(results: dict[str, Any]) -> list[Target]:
    median, overhead = results["median_ratio"], results["overhead_ms"]
    ratio = results["throughput"]["ratio"]
    return [
        ("median latency ratio api/direct", median, "<= 1.10", median <= 1.10),
        ("overhead p50 (ms)", overhead["p50"], "<= 20", overhead["p50"] <= 20),
        ("overhead p99 (ms)", overhead["p99"], "<= 60", overhead["p99"] <= 60),
        ("throughput ratio api/direct", ratio, ">= 0.85", ratio >= 0.85),
    ]


def report(results: dict[str, Any]) -> None:
    latency, tokens, rates = results["latency_ms"], results["tokens_mean"], results["throughput"]
    names = ("api", "direct", "floor")
    print(f"\nconversation turn (API) vs direct SLM completion, max_tokens {MAX_TOKENS}")
    print(f"{'':34}{'API':>10}{'direct':>10}{'floor':>10}")
    for key in ("p50", "p90", "p99"):
        values = "".join(f"{latency[name][key]:>10.1f}" for name in names)
        print(f"{'latency ' + key + ' (ms)':34}{values}")
    print(f"{'completion tokens (mean)':34}" + "".join(f"{tokens[n]:>10.1f}" for n in names))
    label = f"throughput at {rates['concurrency']} (req/s)"
    print(f"{label:34}{rates['api_rps']:>10.2f}{rates['direct_rps']:>10.2f}")
    print(f"\n{'overhead (ms)':34}{'p50':>10}{'p90':>10}{'p99':>10}")
    for label, key in (
        ("API turn minus its SLM call", "overhead_ms"),
        ("floor minus its SLM call", "floor_overhead_ms"),
        ("API turn minus direct (pairwise)", "pairwise_overhead_ms"),
    ):
        print(f"{label:34}" + "".join(f"{results[key][q]:>10.1f}" for q in ("p50", "p90", "p99")))
    print("\nAPI turn by phase (ms, from its workflow history; bench/phases.py)")
    for name, values in results["phases_ms"].items():
        print(f"  {name:32}" + "".join(f"{values[q]:>10.1f}" for q in ("p50", "p90", "p99")))
    print_targets(targets(results), RESULTS)


def print_targets(rows: list[Target], written_to: Path) -> None:
    print(f"\n{'target':34}{'value':>10}{'goal':>10}")
    for name, value, goal, met in rows:
        print(f"{name:34}{value:>10.2f}{goal:>10}  {'MET' if met else 'MISSED'}")
    print(f"\nwritten to {written_to}")


@asynccontextmanager
async def running_stack(name: str) -> AsyncIterator[EmbeddedStack]:
    """The embedded stack on free ports in a new temporary data dir, within the time limit."""
    # The worker and the API inherit this environment: their replies stop at MAX_TOKENS too.
    os.environ["ORCH_MAX_REPLY_TOKENS"] = str(MAX_TOKENS)
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    stack = EmbeddedStack(data_dir, DevPorts.free())
    try:
        async with asyncio.timeout(TIME_LIMIT_SECONDS):
            await stack.start()
            yield stack
    finally:
        await stack.stop()
    shutil.rmtree(data_dir)  # kept when the run fails: the service logs are in it


def write_results(path: Path, results: dict[str, Any], rows: list[Target]) -> None:
    results["targets"] = {name: {"value": v, "goal": g, "met": m} for name, v, g, m in rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


async def run(requests: int, concurrency: int, count: int) -> dict[str, Any]:
    async with running_stack("turns") as stack:
        results = await measure(stack, requests, concurrency, count)
    write_results(RESULTS, results, targets(results))
    return results
