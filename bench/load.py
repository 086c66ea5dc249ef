"""Load and capacity: N live sessions taking short turns through the API for a fixed time.

Starts the embedded stack as `bench.turns` does, then restarts the worker and the API with
replies of 8 tokens (ORCH_MAX_REPLY_TOKENS), a context of at most 64 tokens
(ORCH_CONTEXT_TOKEN_BUDGET, so a session's growing history does not lengthen its SLM call)
and every tenant's limits out of reach (ORCH_LIMITS), so that the orchestration is measured,
not the model or the limiter. For each N of `--sessions`, on a worker and an API started
afresh:

1. open N sessions, each with its first turn (`step`, 32 in flight);
2. warm up for 10 s, then read the resident memory of the worker's and the API's
   process trees (/proc) and the worker's sticky cache counters (its /metrics);
3. for `--duration` seconds, `--concurrency` clients each take a turn on a random session not
   already in flight, again and again (a closed loop), by `step` and by `stream` in turn;
   then read memory and the counters again.

The largest N then runs steps 2 and 3 again on its sessions with the worker restarted with a
cache of N/10 (ORCH_WORKER_MAX_CACHED_WORKFLOWS): most turns find their session evicted and
the worker replays its history first; the latency difference is that cost. A turn is an
error when it is not answered 200 or does not end `completed` or `refused`. Everything
talks to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench import memory
from bench.harness import (
    TIME_LIMIT_SECONDS,
    Target,
    restart,
    running_stack,
    spread,
    user_token,
    write_results,
)
from bench.ttft import Event, events
from deploy.stack import PRODUCT, EmbeddedStack

RESULTS = Path(__file__).parent / "results" / "load.json"
PROMPT = "Say hello."
REPLY_TOKENS = 8
CONTEXT_TOKENS = 64
OPEN_CONCURRENCY = 32
WARM_UP_SECONDS = 10
#: The SDK's default cache, which holds every session of any N this bench takes.
FULL_CACHE = 1000
LIMITS = {
    "requests_per_second": 100_000,
    "burst": 100_000,
    "concurrent_streams": 100_000,
    "turns_in_flight_per_session": 100_000,
}
KINDS = ("step", "stream")
QUANTILES = ("p50", "p90", "p99")
ENDINGS = {"completed", "refused"}
ERROR_SAMPLES = 5
GROWTH_GOAL = 10.0


def environment(cache: int) -> dict[str, str]:
    return {
        "ORCH_MAX_REPLY_TOKENS": str(REPLY_TOKENS),
        "ORCH_CONTEXT_TOKEN_BUDGET": str(CONTEXT_TOKENS),
        "ORCH_LIMITS": json.dumps(LIMITS),
        "ORCH_WORKER_MAX_CACHED_WORKFLOWS": str(cache),
    }


def planned_seconds(sizes: list[int], duration: int) -> int:
    """The warm-ups and steady phases alone (one per N, and the small cache's)."""
    return (len(set(sizes)) + 1) * (WARM_UP_SECONDS + duration)


class Turns:
    """Turns through the API, each checked; what went wrong is counted and the first kept."""

    def __init__(self, http: httpx.AsyncClient, stack: EmbeddedStack, token: str) -> None:
        api = stack.urls()["api_url"]
        self.http = http
        self._urls = {kind: f"{api}/v1/conversation/{kind}" for kind in KINDS}
        self._auth = {"Authorization": f"Bearer {token}"}
        self.errors, self.refused = 0, 0
        self.error_samples: list[str] = []

    async def take(self, kind: str, session: str) -> tuple[float, float | None] | None:
        """Seconds to the turn's end (a stream's final event) and, for a step that called the
        SLM, the seconds of that call (Server-Timing); None for an error."""
        body = {"session_id": session, "message": PROMPT}
        started = time.perf_counter()
        try:
            ended, slm = await (self._step if kind == "step" else self._stream)(body)
        except (httpx.HTTPError, ValueError, KeyError) as error:
            ended, slm = f"{type(error).__name__}: {error}", None
        seconds = time.perf_counter() - started
        self.refused += ended == "refused"
        if ended in ENDINGS:
            return seconds, slm
        self.errors += 1
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(f"{kind} {session}: {ended}"[:300])
        return None

    async def _step(self, body: dict[str, str]) -> tuple[str, float | None]:
        response = await self.http.post(self._urls["step"], json=body, headers=self._auth)
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text}", None
        timing = response.headers.get("server-timing", "")
        stages = dict(part.split(";dur=") for part in timing.split(", ") if ";dur=" in part)
        slm = float(stages["slm"]) / 1000 if "slm" in stages else None
        return str(response.json()["status"]), slm

    async def _stream(self, body: dict[str, str]) -> tuple[str, None]:
        request = self.http.stream("POST", self._urls["stream"], json=body, headers=self._auth)
        async with request as response:
            if response.status_code != 200:
                await response.aread()
                return f"HTTP {response.status_code}: {response.text}", None
            last = Event("", "")
            async for event in events(response):
                last = event
        if last.name in {f"turn.{ending}" for ending in ENDINGS}:
            return last.name.removeprefix("turn."), None
        return f"ended with {last.name or 'no event'}: {last.data}", None

    def tally(self) -> dict[str, Any]:
        return {"errors": self.errors, "refused": self.refused, "error_samples": self.error_samples}


async def open_sessions(turns: Turns, count: int) -> list[str]:
    """`count` new sessions, each started by its first turn."""
    prefix = uuid.uuid4().hex[:8]
    sessions = [f"load-{prefix}-{i}" for i in range(count)]
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(session: str) -> None:
        async with gate:
            await turns.take("step", session)

    await asyncio.gather(*(one(session) for session in sessions))
    return sessions


async def closed_loop(
    turns: Turns, sessions: list[str], seconds: float, concurrency: int
) -> dict[str, list[float]]:
    """Turns for `seconds` by `concurrency` clients, each on a random session not in flight,
    step and stream in turn. The latencies of those that ended well, per kind, and of the
    steps, their latency minus their SLM call (`overhead`)."""
    idle, choose, order = list(sessions), random.Random(len(sessions)), itertools.count()
    latencies: dict[str, list[float]] = {kind: [] for kind in (*KINDS, "overhead")}
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < deadline:
            pick = choose.randrange(len(idle))
            idle[pick], idle[-1] = idle[-1], idle[pick]
            session, kind = idle.pop(), KINDS[next(order) % len(KINDS)]
            try:
                taken = await turns.take(kind, session)
            finally:
                idle.append(session)
            if taken is not None:
                latencies[kind].append(taken[0])
                if taken[1] is not None:
                    latencies["overhead"].append(taken[0] - taken[1])

    await asyncio.gather(*(client() for _ in range(min(concurrency, len(sessions)))))
    return latencies


async def steady(
    stack: EmbeddedStack, turns: Turns, sessions: list[str], duration: float, concurrency: int
) -> dict[str, Any]:
    """Warm-up, then `duration` seconds of the closed loop, with memory and cache around it."""
    http = turns.http
    await closed_loop(turns, sessions, WARM_UP_SECONDS, concurrency)
    before, started = await memory.snapshot(http, stack), time.perf_counter()
    latencies = await closed_loop(turns, sessions, duration, concurrency)
    elapsed = time.perf_counter() - started
    spent = memory.between(before, await memory.snapshot(http, stack))
    done = len(latencies["step"]) + len(latencies["stream"])
    return {
        "concurrency": min(concurrency, len(sessions)),
        "seconds": elapsed,
        "turns": done,
        "turns_per_second": done / elapsed,
        "latency_ms": {
            kind: dict(spread(values)) if values else dict.fromkeys(QUANTILES)
            for kind, values in latencies.items()
        },
        **spent,
        # What a turn costs each service, in CPU: what one more core of it buys.
        "cpu_ms_per_turn": {
            name: seconds * 1000 / done if done else None
            for name, seconds in spent["cpu_seconds"].items()
        },
        **turns.tally(),
    }


async def measure(
    stack: EmbeddedStack, sizes: list[int], duration: float, concurrency: int
) -> dict[str, Any]:
    token, rows = user_token(stack), []
    most = 2 * max(concurrency, OPEN_CONCURRENCY)
    limits = httpx.Limits(max_connections=most, max_keepalive_connections=most)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        sessions: list[str] = []
        for size in sorted(set(sizes)):
            await restart(stack, PRODUCT, environment(FULL_CACHE))
            turns, started = Turns(http, stack, token), time.perf_counter()
            sessions = await open_sessions(turns, size)
            row = {"sessions": size, "cache": FULL_CACHE, "open_s": time.perf_counter() - started}
            rows.append(row | await steady(stack, turns, sessions, duration, concurrency))
        small = max(1, len(sessions) // 10)
        await restart(stack, ("worker",), environment(small))
        row = {"sessions": len(sessions), "cache": small}
        turns = Turns(http, stack, token)
        rows.append(row | await steady(stack, turns, sessions, duration, concurrency))
    full, evicting = rows[-2]["latency_ms"], rows[-1]["latency_ms"]
    return {
        "prompt": PROMPT,
        "max_reply_tokens": REPLY_TOKENS,
        "context_token_budget": CONTEXT_TOKENS,
        "limits": LIMITS,
        "warm_up_seconds": WARM_UP_SECONDS,
        "duration_seconds": duration,
        "concurrency": concurrency,
        "rows": rows,
        # The largest N with a cache of N/10 minus the same N with every session cached.
        "cache_cost_ms": {
            k: {q: _minus(evicting[k][q], full[k][q]) for q in QUANTILES} for k in full
        },
    }


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def targets(results: dict[str, Any]) -> list[Target]:
    rows = results["rows"]
    errors = sum(row["errors"] for row in rows)
    met: list[Target] = [("errors, every phase", errors, "== 0", errors == 0)]
    for name in PRODUCT:
        worst = max(row["rss_bytes"][name]["growth_pct"] for row in rows)
        met.append((f"{name} memory growth, max (%)", worst, "< 10", worst < GROWTH_GOAL))
    return met


async def run(sizes: list[int], duration: float, concurrency: int) -> dict[str, Any]:
    try:
        async with running_stack("load", environment(FULL_CACHE)) as stack:
            results = await measure(stack, sizes, duration, concurrency)
    except TimeoutError:
        raise SystemExit(
            f"python -m bench load: not done within {TIME_LIMIT_SECONDS} s; "
            "ask for fewer --sessions or a shorter --duration"
        ) from None
    write_results(RESULTS, results, targets(results))
    return results
