"""The printed report of `python -m bench load` (bench/load.py): latency, memory and the
sticky cache, each service's CPU per turn, and the targets."""

from __future__ import annotations

import json
from typing import Any

from bench.harness import print_targets
from bench.load import (
    CONTEXT_TOKENS,
    LIMITS,
    PROMPT,
    REPLY_TOKENS,
    RESULTS,
    WARM_UP_SECONDS,
    targets,
)
from deploy.stack import PRODUCT


def _ms(value: float | None, width: int) -> str:
    return f"{'-' if value is None else f'{value:.0f}':>{width}}"


def report(results: dict[str, Any]) -> None:
    rows, mib = results["rows"], 1024 * 1024
    print(
        f"\nload: N live sessions, {results['concurrency']} clients (at most N) "
        "in a closed loop for "
        f"{results['duration_seconds']} s after {WARM_UP_SECONDS} s of warm-up, step and stream "
        f"in turn;\nreplies of {REPLY_TOKENS} tokens, context {CONTEXT_TOKENS} tokens, prompt "
        f"{PROMPT!r}; every tenant's limits raised out of reach\n"
        f"(ORCH_LIMITS={json.dumps(LIMITS)}): capacity is measured, not the limiter."
    )
    print("\nlatency (ms): a turn to its end; overhead: a step minus its SLM call (Server-Timing)")
    print(f"{'sessions':>9}{'cache':>6}{'turns/s':>8}{'step p50':>9}{'p99':>6}", end="")
    print(f"{'stream p50':>11}{'p99':>6}{'overhead p50':>13}{'p99':>6}{'errors':>7}{'refused':>8}")
    for row in rows:
        at = row["latency_ms"]
        print(f"{row['sessions']:>9}{row['cache']:>6}{row['turns_per_second']:>8.2f}", end="")
        print(_ms(at["step"]["p50"], 9) + _ms(at["step"]["p99"], 6), end="")
        print(_ms(at["stream"]["p50"], 11) + _ms(at["stream"]["p99"], 6), end="")
        print(_ms(at["overhead"]["p50"], 13) + _ms(at["overhead"]["p99"], 6), end="")
        print(f"{row['errors']:>7}{row['refused']:>8}")
    print("\nresident memory (MiB) of each process tree, after warm-up -> after; the sticky")
    print("cache: workflow tasks that found their session cached or not, sessions evicted")
    print(f"{'sessions':>9}{'cache':>6}{'worker':>14}{'growth':>8}{'API':>14}{'growth':>8}", end="")
    print(f"{'hits':>7}{'misses':>7}{'evicted':>8}")
    for row in rows:
        print(f"{row['sessions']:>9}{row['cache']:>6}", end="")
        for name in PRODUCT:
            rss = row["rss_bytes"][name]
            print(f"{rss['before'] / mib:>7.0f} ->{rss['after'] / mib:>4.0f}", end="")
            print(f"{rss['growth_pct']:>7.1f}%", end="")
        cache = row["sticky_cache"]
        print(f"{cache['hits']:>7.0f}{cache['misses']:>7.0f}{cache['forced_evictions']:>8.0f}")
    names = list(rows[0]["cpu_ms_per_turn"])
    print("\nCPU ms per turn of each service (user + system, its whole process tree)")
    print(f"{'sessions':>9}{'cache':>6}" + "".join(f"{name:>9}" for name in names))
    for row in rows:
        print(f"{row['sessions']:>9}{row['cache']:>6}", end="")
        print("".join(_ms(row["cpu_ms_per_turn"].get(name), 9) for name in names))
    cost, last = results["cache_cost_ms"], rows[-1]
    print(
        f"\n{last['sessions']} sessions, a cache of {last['cache']} minus all cached (ms): ", end=""
    )
    print(", ".join(f"{k} p50 {_ms(v['p50'], 0)}, p99 {_ms(v['p99'], 0)}" for k, v in cost.items()))
    for row in rows:
        for sample in row["error_samples"]:
            print(f"  error ({row['sessions']} sessions, cache {row['cache']}): {sample}")
    print_targets(targets(results), RESULTS)
