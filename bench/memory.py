"""What the product's processes hold and spend, for `bench.load`: the resident memory of the
worker's and the API's process trees and the CPU time of every service's, read from /proc,
and the worker's sticky workflow cache, read from its /metrics (the Temporal SDK's counters)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from deploy.stack import PRODUCT, EmbeddedStack

#: The SDK's cache metrics (before any `_total` its exporter adds), by the name reported.
STICKY_CACHE = {
    "temporal_sticky_cache_hit": "hits",
    "temporal_sticky_cache_miss": "misses",
    "temporal_sticky_cache_total_forced_eviction": "forced_evictions",
    "temporal_sticky_cache_size": "size",
}
COUNTERS = ("hits", "misses", "forced_evictions")


_TICKS = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[Path]:
    """/proc of `pid` and of every process below it that is still there."""
    found, pending = [], [pid]
    while pending:
        proc = Path("/proc", str(pending.pop()))
        try:
            for task in (proc / "task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.append(proc)
    return found


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every process below it."""
    total = 0
    for proc in _tree(pid):
        try:
            status = (proc / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):  # "VmRSS:     123456 kB"
                total += int(line.split()[1]) * 1024
    return total


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user and system) spent so far by `pid` and every process below it."""
    total = 0.0
    for proc in _tree(pid):
        try:
            total += stat_cpu_seconds((proc / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def stat_cpu_seconds(stat: str) -> float:
    """CPU seconds (user and system) of a process or thread, from its /proc `stat` line."""
    # After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    fields = stat.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def sticky_cache(http: httpx.AsyncClient, metrics_url: str) -> dict[str, float]:
    """The worker's cache counters so far, summed over task queues and workflow types."""
    response = await http.get(metrics_url)
    response.raise_for_status()
    found = dict.fromkeys(STICKY_CACHE.values(), 0.0)
    for line in response.text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        # `name{labels} value [timestamp]`, or `name value [timestamp]`
        head, _, tail = line.rpartition("}") if "{" in line else line.partition(" ")
        name = head.split("{", 1)[0].strip().removesuffix("_total")
        if name in STICKY_CACHE:
            found[STICKY_CACHE[name]] += float(tail.split()[0])
    return found


async def snapshot(http: httpx.AsyncClient, stack: EmbeddedStack) -> dict[str, Any]:
    """Resident bytes of the worker and the API now, every service's CPU seconds so far,
    and the worker's cache counters."""
    pids = stack.pids()
    metrics = f"http://{stack.settings.worker_metrics_address}/metrics"
    return {
        "rss": {name: tree_rss(pids[name]) for name in PRODUCT},
        "cpu": {name: tree_cpu_seconds(pid) for name, pid in pids.items()},
        "cache": await sticky_cache(http, metrics),
    }


def between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Memory before and after, with its growth in per cent; the CPU seconds each service
    spent between; what the cache counted between."""
    rss: dict[str, dict[str, float]] = {}
    for name in PRODUCT:
        old, new = before["rss"][name], after["rss"][name]
        growth = (new - old) / old * 100 if old else 0.0
        rss[name] = {"before": old, "after": new, "growth_pct": growth}
    counted = {key: after["cache"][key] - before["cache"][key] for key in COUNTERS}
    looked_up = counted["hits"] + counted["misses"]
    hit_pct = counted["hits"] / looked_up * 100 if looked_up else None
    cache = {**counted, "hit_pct": hit_pct, "size_after": after["cache"]["size"]}
    cpu = {name: after["cpu"][name] - before["cpu"].get(name, 0.0) for name in after["cpu"]}
    return {"rss_bytes": rss, "cpu_seconds": cpu, "sticky_cache": cache}
