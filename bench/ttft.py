"""Time to first token through the SSE route against the SLM server's own, same prompt, same run.

Starts the embedded stack as `bench.turns` does, then alternates two paths, the order
rotating each round, so both see the same machine:

- sse: `POST /v1/conversation/stream` on a new session, from sending the request to the
  first `token` event; read on to `turn.completed`, which it must end with.
- direct: the same chat completion, streamed straight from the SLM server, from sending the
  request to the first chunk with content; read on to the end, so the server is free.
- floor: Temporal alone in a streamed turn's shape (`bench.floor`): update-with-start, one
  activity on a second task queue that streams the direct path's completion, from sending
  the update to that activity's first token. What the SSE route can approach, not go under.

The extra time to first token is compared two ways: the difference of the paths'
percentiles, and pairwise (each request minus the direct one of its round). The SSE path's
time to `turn.accepted`, which the SLM activity writes just before it calls the server,
splits the extra into before the SLM call and after it began.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench import floor
from bench.chat import MAX_TOKENS, PROMPT, chat_body, first_token, streamed
from bench.harness import (
    WARM_UP,
    Target,
    print_targets,
    rotated,
    running_stack,
    spread,
    user_token,
    write_results,
)
from core.connections import connect_temporal
from deploy.stack import EmbeddedStack

RESULTS = Path(__file__).parent / "results" / "ttft.json"
QUANTILES = ("p50", "p90", "p99")


@dataclass(frozen=True)
class Sample:
    #: Seconds from sending the request to the first token.
    first_token: float
    tokens: int
    #: SSE requests: seconds to the `turn.accepted` event.
    accepted: float = 0.0


@dataclass(frozen=True)
class Event:
    name: str
    data: str


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """Each event of a `text/event-stream` response; comment lines (keep-alives) skipped."""
    name, seen = "message", False
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if seen:
                yield Event(name, "\n".join(data))
            name, data, seen = "message", [], False
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value, seen = value.removeprefix(" "), True
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


class Paths:
    """Three ways to the first token of one reply: the SSE route, the SLM server, the floor."""

    def __init__(
        self, http: httpx.AsyncClient, temporal: Client, stack: EmbeddedStack, token: str
    ) -> None:
        urls = stack.urls()
        self._http, self._temporal = http, temporal
        self._stream_url = f"{urls['api_url']}/v1/conversation/stream"
        self.chat_url = f"{urls['slm_base_url']}/chat/completions"
        self._auth = {"Authorization": f"Bearer {token}"}
        self._chat = streamed(chat_body(stack.settings.slm_model))

    async def sse(self) -> Sample:
        body = {"session_id": f"bench-ttft-{uuid.uuid4().hex}", "message": PROMPT}
        first: dict[str, float] = {}
        tokens, last = 0, Event("", "")
        started = time.perf_counter()
        request = self._http.stream("POST", self._stream_url, json=body, headers=self._auth)
        async with request as response:
            if response.status_code != 200:
                await response.aread()
                raise RuntimeError(
                    f"the stream route answered {response.status_code}: {response.text}"
                )
            async for event in events(response):
                first.setdefault(event.name, time.perf_counter() - started)
                tokens += event.name == "token"
                last = event
        if last.name != "turn.completed" or "token" not in first:
            ended = f"{last.name}: {last.data}" if last.name else "no event"
            raise RuntimeError(f"the streamed turn sent {tokens} tokens and ended with {ended}")
        return Sample(first["token"], tokens, first["turn.accepted"])

    async def direct(self) -> Sample:
        started = time.perf_counter()
        first, tokens = await first_token(self._http, self.chat_url, self._chat)
        return Sample(first - started, tokens)

    async def floor(self) -> Sample:
        started = time.perf_counter()
        reply, _ = await floor.complete(self._temporal, self._chat)
        return Sample(reply.first_token_at - started, reply.completion_tokens)


def summary(samples: dict[str, list[Sample]]) -> dict[str, Any]:
    sse, direct = samples["sse"], samples["direct"]
    pairs = list(zip(sse, direct, strict=True))
    ttft = {name: spread([s.first_token for s in taken]) for name, taken in samples.items()}
    return {
        "requests_per_path": len(sse),
        "ttft_ms": ttft,
        "tokens_mean": {
            name: statistics.fmean(s.tokens for s in taken) for name, taken in samples.items()
        },
        "extra_ms": {q: ttft["sse"][q] - ttft["direct"][q] for q in QUANTILES},
        "pairwise_extra_ms": spread([s.first_token - d.first_token for s, d in pairs]),
        # Temporal's own share: the floor's extra over the same direct requests.
        "floor_extra_ms": {q: ttft["floor"][q] - ttft["direct"][q] for q in QUANTILES},
        "pairwise_floor_extra_ms": spread(
            [f.first_token - d.first_token for f, d in zip(samples["floor"], direct, strict=True)]
        ),
        # `turn.accepted` (with the verdict) is written by the SLM activity just before its
        # call: the SSE route's time to it, and the extra left after it (the call, the Redis
        # Stream and the relay).
        "to_accepted_ms": spread([s.accepted for s in sse]),
        "pairwise_extra_after_accepted_ms": spread(
            [s.first_token - s.accepted - d.first_token for s, d in pairs]
        ),
    }


async def measure(stack: EmbeddedStack, requests: int) -> dict[str, Any]:
    settings = stack.settings
    temporal = await connect_temporal(settings)
    async with httpx.AsyncClient(timeout=120) as http:
        paths = Paths(http, temporal, stack, user_token(stack))
        async with floor.serving(temporal, http, paths.chat_url):
            calls = {"sse": paths.sse, "direct": paths.direct, "floor": paths.floor}
            await rotated(calls, WARM_UP)
            return summary(await rotated(calls, requests))


def targets(results: dict[str, Any]) -> list[Target]:
    extra, pairwise = results["extra_ms"], results["pairwise_extra_ms"]
    # Issue 15's: the extra time to first token against the floor's own extra.
    against_floor = extra["p50"] / results["floor_extra_ms"]["p50"]
    return [
        ("extra TTFT p50 / floor's extra p50", against_floor, "<= 1.2", against_floor <= 1.2),
        ("extra TTFT p50 (ms)", extra["p50"], "<= 20", extra["p50"] <= 20),
        ("extra TTFT p99 (ms)", extra["p99"], "<= 60", extra["p99"] <= 60),
        ("extra TTFT p50, pairwise (ms)", pairwise["p50"], "<= 20", pairwise["p50"] <= 20),
        ("extra TTFT p99, pairwise (ms)", pairwise["p99"], "<= 60", pairwise["p99"] <= 60),
    ]


def report(results: dict[str, Any]) -> None:
    ttft, tokens = results["ttft_ms"], results["tokens_mean"]
    rounds, paths = results["requests_per_path"], ("sse", "direct", "floor")
    print(f"\ntime to first token: SSE route vs direct SLM stream, max_tokens {MAX_TOKENS}")
    print(f"{rounds} rounds, the order rotating, after {WARM_UP} warm-up rounds")
    print(f"{'':34}" + "".join(f"{name:>10}" for name in paths))
    for q in QUANTILES:
        print(f"{'TTFT ' + q + ' (ms)':34}" + "".join(f"{ttft[n][q]:>10.1f}" for n in paths))
    print(f"{'completion tokens (mean)':34}" + "".join(f"{tokens[n]:>10.1f}" for n in paths))
    print(f"\n{'extra TTFT over direct (ms)':34}" + "".join(f"{q:>10}" for q in QUANTILES))
    for label, key in (
        ("SSE, of the percentiles", "extra_ms"),
        ("SSE, pairwise", "pairwise_extra_ms"),
        ("floor, of the percentiles", "floor_extra_ms"),
        ("floor, pairwise", "pairwise_floor_extra_ms"),
        ("SSE to turn.accepted", "to_accepted_ms"),
        ("SSE after turn.accepted, pairwise", "pairwise_extra_after_accepted_ms"),
    ):
        print(f"  {label:32}" + "".join(f"{results[key][q]:>10.1f}" for q in QUANTILES))
    print_targets(targets(results), RESULTS)


async def run(requests: int) -> dict[str, Any]:
    async with running_stack("ttft", {"ORCH_MAX_REPLY_TOKENS": str(MAX_TOKENS)}) as stack:
        results = await measure(stack, requests)
    write_results(RESULTS, results, targets(results))
    return results
