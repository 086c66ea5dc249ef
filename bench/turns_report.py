"""The printed report of `python -m bench` (bench/turns.py): per reply length, the three
paths' latency, the overhead within a turn against the floor's, and where a turn's time
goes; then throughput and the targets."""

from __future__ import annotations

from typing import Any

from bench import phases
from bench.harness import print_targets
from bench.turns import RESULTS, targets

QUANTILES = ("p50", "p99")


def report(results: dict[str, Any]) -> None:
    lengths = results["lengths"]
    print(
        f"\nconversation turn (API) vs direct SLM completion vs floor, prompt {results['prompt']!r}"
    )
    print("latency and overhead in ms; overhead: a turn minus its own SLM call")
    print(f"{'max_tokens':>10}{'tokens api/direct/floor':>25}{'api p50':>9}{'direct':>8}", end="")
    print(f"{'floor':>8}{'ratio':>7}{'overhead p50':>13}{'p99':>7}{'floor p50':>10}{'p99':>7}")
    for length, at in lengths.items():
        tokens, latency = at["tokens_mean"], at["latency_ms"]
        counts = "/".join(f"{tokens[path]:.0f}" for path in ("api", "direct", "floor"))
        print(f"{length:>10}{counts:>25}", end="")
        print(
            "".join(
                f"{latency[path]['p50']:>{w}.0f}"
                for path, w in (("api", 9), ("direct", 8), ("floor", 8))
            ),
            end="",
        )
        print(f"{at['median_ratio']:>7.2f}", end="")
        print(f"{at['overhead_ms']['p50']:>13.1f}{at['overhead_ms']['p99']:>7.1f}", end="")
        print(f"{at['floor_overhead_ms']['p50']:>10.1f}{at['floor_overhead_ms']['p99']:>7.1f}")
    print("\nby phase, p50 ms, API turn / floor (from workflow histories; bench/phases.py)")
    print(f"{'max_tokens':>10}" + "".join(f"{name[:12]:>13}" for name in phases.PHASES))
    for length, at in lengths.items():
        values = "".join(
            f"{at['phases_ms'][name]['p50']:>7.1f}/{at['floor_phases_ms'][name]['p50']:<5.1f}"
            for name in phases.PHASES
        )
        print(f"{length:>10}{values}")
    print("\nthe turn's overhead above the floor's, p50 ms: the HTTP front, the input and output")
    print("checks, and Temporal's path as the product runs it (without the checks) / the floor's")
    print(f"{'max_tokens':>10}{'front':>8}{'checks':>8}{'temporal path':>16}")
    for length, at in lengths.items():
        part = at["extra_by_part_ms"]
        path = f"{part['temporal_path']:.1f}/{part['floor_temporal_path']:.1f}"
        print(f"{length:>10}{part['front']:>8.1f}{part['checks']:>8.1f}{path:>16}")
    rates = results["throughput"]
    print(
        f"\nthroughput at concurrency {rates['concurrency']}, max_tokens {rates['max_tokens']}:",
        end="",
    )
    print(f" API {rates['api_rps']:.2f} req/s, direct {rates['direct_rps']:.2f} req/s")
    print_targets(targets(results), RESULTS)
