"""One conversation turn through the API against the same completion sent straight to the SLM,
at each reply length.

Starts the embedded stack (`EmbeddedStack`, as `orchestrator dev` does) on free ports in a
temporary data dir. For each reply length (`max_tokens` 16, 64, 256, 512 by default) it
restarts the worker and the API with that ORCH_MAX_REPLY_TOKENS and takes sequential rounds
of three paths, in rotating order, so all see the same machine: the API turn, the direct
completion, and the floor (`bench.floor`: Temporal alone, in the turn's shape). Then
throughput at a fixed concurrency at the product's default reply length. Everything talks
to 127.0.0.1.

Orchestration overhead is measured two ways: within each turn (its latency minus its own
SLM call, which the API reports in Server-Timing; the floor's activity times its call the
same way), and pairwise (a turn minus the direct call next to it, which also carries the
spread of two separate generations). Each API turn's history splits its time into phases
(`bench.phases`), so the part of the overhead that grows with the reply can be found.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench import floor, phases
from bench.chat import PROMPT, chat_body
from bench.harness import (
    WARM_UP,
    Target,
    restart,
    rotated,
    running_stack,
    spread,
    user_token,
    write_results,
)
from core.connections import connect_temporal
from deploy.stack import PRODUCT, EmbeddedStack

RESULTS = Path(__file__).parent / "results" / "turns.json"
LENGTHS = (16, 64, 256, 512)
#: The product's default ORCH_MAX_REPLY_TOKENS: what a user gets, and where throughput is measured.
DEFAULT_LENGTH = 256
TIME_LIMIT_SECONDS = 45 * 60


@dataclass(frozen=True)
class Sample:
    seconds: float
    completion_tokens: int
    #: The part of `seconds` spent in the SLM call itself.
    slm_seconds: float
    #: API turns: the workflow run and wall-clock times, to read the phases from history.
    trace: phases.TurnTrace | None = None
    #: API turns: the input and output checks' time (Server-Timing), which the floor has not.
    checks_seconds: float = 0.0

    @property
    def overhead(self) -> float:
        return self.seconds - self.slm_seconds


class Paths:
    """Three ways to get one reply: a conversation turn, the bare completion, the floor."""

    def __init__(
        self, http: httpx.AsyncClient, temporal: Client, stack: EmbeddedStack, max_tokens: int
    ) -> None:
        urls = stack.urls()
        self._http, self.temporal = http, temporal
        self._step_url = f"{urls['api_url']}/v1/conversation/step"
        self.chat_url = f"{urls['slm_base_url']}/chat/completions"
        self._auth = {"Authorization": f"Bearer {user_token(stack)}"}
        self._chat = chat_body(stack.settings.slm_model, max_tokens=max_tokens)

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
        checks = (float(stages["input_moderation"]) + float(stages["output_moderation"])) / 1000
        trace = phases.TurnTrace(turn["workflow_id"], turn["run_id"], sent, received, slm_seconds)
        tokens = int(turn["usage"]["completion_tokens"])
        return Sample(elapsed, tokens, slm_seconds, trace, checks)

    async def direct(self) -> Sample:
        started = time.perf_counter()
        response = await self._http.post(self.chat_url, json=self._chat)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return Sample(elapsed, int(response.json()["usage"]["completion_tokens"]), elapsed)

    async def floor(self) -> Sample:
        started = time.perf_counter()
        reply, trace = await floor.complete(self.temporal, self._chat)
        elapsed = time.perf_counter() - started
        return Sample(elapsed, reply.completion_tokens, reply.slm_seconds, trace)


#: The phases an HTTP front adds to: before the first workflow task, after the last.
FRONT = ("to_first_task", "reply")


async def where_it_goes(temporal: Client, taken: list[Sample]) -> list[dict[str, float]]:
    """The phases (`bench.phases`) of each API turn or floor request, in ms."""
    return [await phases.phases(temporal, s.trace) for s in taken if s.trace is not None]


def by_phase(measured: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {name: spread([m[name] for m in measured], scale=1.0) for name in phases.PHASES}


def extra_by_part(
    api: list[Sample], turns: list[dict[str, float]], floor: list[dict[str, float]]
) -> dict[str, float]:
    """The turn's overhead above the floor's at p50, split three ways: the HTTP front (the
    phases before the first workflow task and after the last), the input and output checks
    (the turn's own Server-Timing), and the rest, Temporal's path run by the product."""

    def p50(values: list[float]) -> float:
        return spread(values, scale=1.0)["p50"]

    def front(m: dict[str, float]) -> float:
        return sum(m[name] for name in FRONT)

    def path(m: dict[str, float]) -> float:
        return sum(m[name] for name in phases.PHASES if name not in FRONT)

    checks = [s.checks_seconds * 1000 for s in api]
    return {
        "front": p50([front(m) for m in turns]) - p50([front(m) for m in floor]),
        "checks": p50(checks),
        "temporal_path": p50([path(m) - c for m, c in zip(turns, checks, strict=True)]),
        "floor_temporal_path": p50([path(m) for m in floor]),
    }


async def sequential(paths: Paths, rounds: int) -> dict[str, Any]:
    """`rounds` of one request per path (`rotated`)."""
    calls = {"api": paths.api, "direct": paths.direct, "floor": paths.floor}
    samples = await rotated(calls, rounds)
    api, direct = samples["api"], samples["direct"]
    matched = list(zip(api, direct, strict=True))
    turns = await where_it_goes(paths.temporal, api)
    floors = await where_it_goes(paths.temporal, samples["floor"])
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
        "phases_ms": by_phase(turns),
        "floor_phases_ms": by_phase(floors),
        "extra_by_part_ms": extra_by_part(api, turns, floors),
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


async def at_length(
    stack: EmbeddedStack, http: httpx.AsyncClient, temporal: Client, length: int
) -> Paths:
    """The product restarted with replies of `length` tokens, each path warmed up."""
    await restart(stack, PRODUCT, {"ORCH_MAX_REPLY_TOKENS": str(length)})
    paths = Paths(http, temporal, stack, length)
    await rotated({"api": paths.api, "direct": paths.direct, "floor": paths.floor}, WARM_UP)
    return paths


async def measure(
    stack: EmbeddedStack, lengths: list[int], requests: int, concurrency: int, count: int
) -> dict[str, Any]:
    temporal = await connect_temporal(stack.settings)
    limits = httpx.Limits(max_connections=concurrency * 2)
    chat_url = f"{stack.urls()['slm_base_url']}/chat/completions"
    results: dict[str, Any] = {"prompt": PROMPT, "lengths": {}}
    async with (
        httpx.AsyncClient(timeout=300, limits=limits) as http,
        floor.serving(temporal, http, chat_url),
    ):
        for length in sorted(set(lengths)):
            paths = await at_length(stack, http, temporal, length)
            results["lengths"][str(length)] = await sequential(paths, requests)
        paths = await at_length(stack, http, temporal, DEFAULT_LENGTH)
        direct_rps = await throughput(paths.direct, count, concurrency)
        api_rps = await throughput(paths.api, count, concurrency)
    results["throughput"] = {
        "max_tokens": DEFAULT_LENGTH,
        "concurrency": concurrency,
        "requests_per_path": count,
        "api_rps": api_rps,
        "direct_rps": direct_rps,
        "ratio": api_rps / direct_rps,
    }
    return results


def targets(results: dict[str, Any]) -> list[Target]:
    """Issue 15's: the overhead within a turn against the floor's at every length, its growth
    from the shortest to the longest reply, the median ratio at 64 and 256, throughput."""
    met: list[Target] = []
    lengths = results["lengths"]
    for length, at in lengths.items():
        for q, times in (("p50", 1.15), ("p99", 1.3)):
            ratio = at["overhead_ms"][q] / at["floor_overhead_ms"][q]
            met.append((f"{length}: overhead/floor's {q}", ratio, f"<= {times}", ratio <= times))
    if len(lengths) > 1:
        shortest, longest = min(lengths, key=int), max(lengths, key=int)
        growth = lengths[longest]["overhead_ms"]["p50"] - lengths[shortest]["overhead_ms"]["p50"]
        met.append((f"overhead p50 {longest} minus {shortest} (ms)", growth, "<= 10", growth <= 10))
    for length in ("64", "256"):
        if length in lengths:
            median = lengths[length]["median_ratio"]
            met.append((f"{length}: median latency api/direct", median, "<= 1.10", median <= 1.10))
    ratio = results["throughput"]["ratio"]
    met.append(("throughput api/direct at 256", ratio, ">= 0.95", ratio >= 0.95))
    return met


async def run(lengths: list[int], requests: int, concurrency: int, count: int) -> dict[str, Any]:
    environment = {"ORCH_MAX_REPLY_TOKENS": str(DEFAULT_LENGTH)}
    async with running_stack("turns", environment, TIME_LIMIT_SECONDS) as stack:
        results = await measure(stack, lengths, requests, concurrency, count)
    write_results(RESULTS, results, targets(results))
    return results
