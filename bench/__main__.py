"""`python -m bench`: the conversation-turn benchmark; `python -m bench ttft`: time to first
token; `python -m bench load`: load and capacity with many live sessions;
`python -m bench moderation`: the moderation policy on its held-out set;
`python -m bench slm`: the SLM's tokens per second, portable build against native;
`python -m bench pii`: personal-data redaction's cost, linear in the text;
`python -m bench cost`: CPU per turn per process, beside Temporal's floor, with flame graphs.

Each is a report, so it exits 0 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio

from bench import cost, harness, load, load_report, pii_scan, slm_builds, ttft, turns, turns_report
from bench.moderation import evaluate


def bounded(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 1000")
    return value


def sizes(text: str) -> list[int]:
    """A comma-separated list of counts, e.g. `100,1000`."""
    counts = [bounded(part) for part in text.split(",") if part.strip()]
    if not counts:
        raise argparse.ArgumentTypeError("expected one or more numbers, e.g. 100,1000")
    return counts


def lengths(text: str) -> list[int]:
    """A comma-separated list of reply lengths in tokens, each 1 to 4096."""
    found = [int(part) for part in text.split(",") if part.strip().isdigit()]
    if not found or len(found) != len(text.split(",")) or not all(1 <= n <= 4096 for n in found):
        raise argparse.ArgumentTypeError(
            f"expected reply lengths from 1 to 4096, e.g. 16,256; got {text!r}"
        )
    return found


#: The turn benchmark's own options and their defaults (the other benchmarks refuse them).
TURN_DEFAULTS: dict[str, object] = {
    "lengths": list(turns.LENGTHS),
    "requests": 20,
    "concurrency": 8,
    "throughput_requests": 24,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=turns.__doc__)
    parser.add_argument(
        "--lengths",
        type=lengths,
        default=TURN_DEFAULTS["lengths"],
        metavar="N,N",
        help="reply lengths in tokens (default 16,64,256,512)",
    )
    for flag, key, text in (
        ("--requests", "requests", "sequential requests per path and length"),
        ("--concurrency", "concurrency", "requests in flight"),
        ("--throughput-requests", "throughput_requests", "throughput requests per path"),
    ):
        parser.add_argument(flag, type=bounded, default=TURN_DEFAULTS[key], help=text)
    benchmarks = parser.add_subparsers(dest="benchmark", help="instead of the turn benchmark")
    first_token = benchmarks.add_parser(
        "ttft", description=ttft.__doc__, help="time to first token, SSE route vs direct"
    )
    # Its own dest: `--requests` before `ttft` is the turn benchmark's.
    first_token.add_argument(
        "--requests",
        dest="ttft_requests",
        type=bounded,
        default=30,
        metavar="N",
        help="rounds (default 30)",
    )
    capacity = benchmarks.add_parser(
        "load", description=load.__doc__, help="turns/s, latency, memory with N live sessions"
    )
    capacity.add_argument(
        "--sessions",
        type=sizes,
        default=[100, 1000],
        metavar="N,N",
        help="live sessions, each N in turn (default 100,1000)",
    )
    capacity.add_argument(
        "--duration", type=bounded, default=60, help="seconds of the steady phase (default 60)"
    )
    # Its own dest: `--concurrency` before `load` is the turn benchmark's.
    capacity.add_argument(
        "--concurrency",
        dest="load_concurrency",
        type=bounded,
        default=16,
        metavar="N",
        help="turns in flight (default 16)",
    )
    spend = benchmarks.add_parser(
        "cost", description=cost.__doc__, help="CPU per turn per process, beside the floor's"
    )
    spend.add_argument(
        "--turns", type=bounded, default=200, help="turns measured per phase (default 200)"
    )
    # Its own dest: `--concurrency` before `cost` is the turn benchmark's.
    spend.add_argument(
        "--concurrency",
        dest="cost_concurrency",
        type=bounded,
        default=4,
        metavar="N",
        help="clients, each on a session of its own (default 4)",
    )
    benchmarks.add_parser(
        "moderation", description=evaluate.__doc__, help="moderation recall, false refusals, cost"
    )
    benchmarks.add_parser(
        "pii", description=pii_scan.__doc__, help="redaction time against text length"
    )
    builds = benchmarks.add_parser(
        "slm", description=slm_builds.__doc__, help="SLM tokens/s: portable vs native build"
    )
    builds.add_argument("--native", default=None, help="the Python of a native build's venv")
    builds.add_argument(
        "--requests", dest="slm_requests", type=bounded, default=10, help="rounds (default 10)"
    )
    builds.add_argument("--max-tokens", type=bounded, default=256, help="default 256")
    args = parser.parse_args()
    if args.benchmark == "slm":
        if any(getattr(args, name) != value for name, value in TURN_DEFAULTS.items()):
            parser.error("give slm's options after `slm`; the others are not its options")
        slm_builds.report(
            asyncio.run(slm_builds.run(args.native, args.slm_requests, args.max_tokens))
        )
        return
    if args.benchmark == "pii":
        pii_scan.report(pii_scan.run())
        return
    if args.benchmark == "cost":
        if any(getattr(args, name) != value for name, value in TURN_DEFAULTS.items()):
            parser.error("give cost's options after `cost`; the others are not its options")
        cost.report(asyncio.run(cost.run(args.turns, args.cost_concurrency)))
        return
    if args.benchmark == "moderation":
        evaluate.report(evaluate.run())
        return
    if args.benchmark == "load":
        if any(getattr(args, name) != value for name, value in TURN_DEFAULTS.items()):
            parser.error("give load's options after `load`; the others are not its options")
        limit = harness.TIME_LIMIT_SECONDS
        if load.planned_seconds(args.sessions, args.duration) > limit // 2:
            parser.error(
                f"--sessions and --duration leave too little of the {limit} s "
                "time limit to start the stack and open the sessions"
            )
        load_report.report(
            asyncio.run(load.run(args.sessions, args.duration, args.load_concurrency))
        )
        return
    if args.benchmark == "ttft":
        if any(getattr(args, name) != value for name, value in TURN_DEFAULTS.items()):
            parser.error("give ttft's options after `ttft`; the others are not its options")
        ttft.report(asyncio.run(ttft.run(args.ttft_requests)))
        return
    results = asyncio.run(
        turns.run(args.lengths, args.requests, args.concurrency, args.throughput_requests)
    )
    turns_report.report(results)


if __name__ == "__main__":
    main()
