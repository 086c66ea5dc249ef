"""One conversation turn through the API against the same completion sent straight to the SLM.

Starts the embedded stack (`EmbeddedStack`, as `orchestrator dev` does) on free ports in a
temporary data dir, then measures sequential latency (the two paths alternate, so both see
the same machine) and throughput at a fixed concurrency. Everything talks to 127.0.0.1.
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from core.tokens import mint_token
from deploy.services import DevPorts
from deploy.stack import EmbeddedStack
from workflows.context import SYSTEM_PROMPT

PROMPT = "Write a long story about a lighthouse keeper."
MAX_TOKENS = 64
WARM_UP = 3
TIME_LIMIT_SECONDS = 15 * 60
RESULTS = Path(__file__).parent / "results" / "turns.json"


@dataclass(frozen=True)
class Sample:
    seconds: float
    completion_tokens: int


class Paths:
    """The two ways to get one reply: a conversation turn, or the bare chat completion."""

    def __init__(self, http: httpx.AsyncClient, stack: EmbeddedStack, token: str) -> None:
        urls = stack.urls()
        self._http, self._model = http, stack.settings.slm_model
        self._step_url = f"{urls['api_url']}/v1/conversation/step"
        self._chat_url = f"{urls['slm_base_url']}/chat/completions"
        self._auth = {"Authorization": f"Bearer {token}"}

    async def api(self) -> Sample:
        body = {"session_id": f"bench-{uuid.uuid4().hex}", "message": PROMPT}
        started = time.perf_counter()
        response = await self._http.post(self._step_url, json=body, headers=self._auth)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        turn = response.json()
        if turn["status"] != "completed":
            raise RuntimeError(f"the API turn ended {turn['status']}: {turn['verdict']}")
        return Sample(elapsed, int(turn["usage"]["completion_tokens"]))

    async def direct(self) -> Sample:
        body = {
            "model": self._model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": PROMPT},
            ],
            "max_tokens": MAX_TOKENS,
            "temperature": 0.7,
        }
        started = time.perf_counter()
        response = await self._http.post(self._chat_url, json=body)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        return Sample(elapsed, int(response.json()["usage"]["completion_tokens"]))


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    return {f"p{int(q * 100)}": percentile(values, q) * scale for q in (0.5, 0.9, 0.99)}


async def sequential(paths: Paths, pairs: int) -> dict[str, Any]:
    """`pairs` API/direct pairs, the first of each pair alternating, so neither path goes first."""
    api: list[Sample] = []
    direct: list[Sample] = []
    for index in range(pairs):
        if index % 2 == 0:
            api.append(await paths.api())
            direct.append(await paths.direct())
        else:
            direct.append(await paths.direct())
            api.append(await paths.api())
    matched = list(zip(api, direct, strict=True))
    overhead = [a.seconds - d.seconds for a, d in matched]
    # Per completion token, so a path that happened to write shorter replies gains nothing.
    per_token = [
        a.seconds / max(a.completion_tokens, 1) - d.seconds / max(d.completion_tokens, 1)
        for a, d in matched
    ]
    api_ms, direct_ms = spread([s.seconds for s in api]), spread([s.seconds for s in direct])
    return {
        "requests_per_path": pairs,
        "api_ms": api_ms,
        "direct_ms": direct_ms,
        "api_tokens_mean": statistics.fmean(s.completion_tokens for s in api),
        "direct_tokens_mean": statistics.fmean(s.completion_tokens for s in direct),
        "median_ratio": api_ms["p50"] / direct_ms["p50"],
        "overhead_ms": spread(overhead),
        "overhead_per_token_ms": spread(per_token),
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
    token = mint_token(stack.settings, tenant="bench", roles=["user"])
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        paths = Paths(http, stack, token)
        for _ in range(WARM_UP):
            await paths.api()
            await paths.direct()
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


def targets(results: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    median, overhead = results["median_ratio"], results["overhead_ms"]
    ratio = results["throughput"]["ratio"]
    return [
        ("median latency ratio api/direct", median, "<= 1.10", median <= 1.10),
        ("overhead p50 (ms)", overhead["p50"], "<= 20", overhead["p50"] <= 20),
        ("overhead p99 (ms)", overhead["p99"], "<= 60", overhead["p99"] <= 60),
        ("throughput ratio api/direct", ratio, ">= 0.85", ratio >= 0.85),
    ]


def report(results: dict[str, Any]) -> None:
    api, direct, rates = results["api_ms"], results["direct_ms"], results["throughput"]
    print(f"\nconversation turn (API) vs direct SLM completion, max_tokens {MAX_TOKENS}")
    print(f"{'':34}{'API':>10}{'direct':>10}")
    for key in ("p50", "p90", "p99"):
        print(f"{'latency ' + key + ' (ms)':34}{api[key]:>10.1f}{direct[key]:>10.1f}")
    print(
        f"{'completion tokens (mean)':34}"
        f"{results['api_tokens_mean']:>10.1f}{results['direct_tokens_mean']:>10.1f}"
    )
    label = f"throughput at {rates['concurrency']} (req/s)"
    print(f"{label:34}{rates['api_rps']:>10.2f}{rates['direct_rps']:>10.2f}")
    overhead, per_token = results["overhead_ms"], results["overhead_per_token_ms"]
    print(f"{'overhead api-direct (ms)':34}{'p50':>10}{overhead['p50']:>10.1f}")
    print(f"{'':34}{'p99':>10}{overhead['p99']:>10.1f}")
    print(f"{'overhead per token (ms/token)':34}{'p50':>10}{per_token['p50']:>10.2f}")
    print(f"{'':34}{'p99':>10}{per_token['p99']:>10.2f}")
    print(f"\n{'target':34}{'value':>10}{'goal':>10}")
    for name, value, goal, met in targets(results):
        print(f"{name:34}{value:>10.2f}{goal:>10}  {'MET' if met else 'MISSED'}")
    print(f"\nwritten to {RESULTS}")


async def run(requests: int, concurrency: int, count: int) -> dict[str, Any]:
    # The worker and the API inherit this environment: their replies stop at MAX_TOKENS too.
    os.environ["ORCH_MAX_REPLY_TOKENS"] = str(MAX_TOKENS)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-turns-"))
    stack = EmbeddedStack(data_dir, DevPorts.free())
    try:
        async with asyncio.timeout(TIME_LIMIT_SECONDS):
            await stack.start()
            results = await measure(stack, requests, concurrency, count)
    finally:
        await stack.stop()
    shutil.rmtree(data_dir)  # kept when the run fails: the service logs are in it
    results["targets"] = {
        name: {"value": v, "goal": g, "met": m} for name, v, g, m in targets(results)
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return results
