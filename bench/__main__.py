"""`python -m bench`: the conversation-turn benchmark; `python -m bench ttft`: time to first
token; `python -m bench load`: load and capacity with many live sessions;
`python -m bench moderation`: the moderation policy on its held-out set.

Each is a report, so it exits 0 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio

from bench import load, load_report, ttft, turns
from bench.moderation import evaluate


def bounded(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 1000")
    return value


def sizes(text: str) -> list[int]:
    """A comma-separated list of session counts, e.g. `100,1000`."""
    counts = [bounded(part) for part in text.split(",") if part.strip()]
    if not counts:
        raise argparse.ArgumentTypeError("expected one or more numbers, e.g. 100,1000")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=turns.__doc__)
    parser.add_argument("--requests", type=bounded, default=30, help="sequential requests per path")
    parser.add_argument("--concurrency", type=bounded, default=8, help="requests in flight")
    parser.add_argument(
        "--throughput-requests", type=bounded, default=40, help="throughput requests per path"
    )
    benchmarks = parser.add_subparsers(dest="benchmark", help="instead of the turn benchmark")
    first_token = benchmarks.add_parser(
        "ttft", description=ttft.__doc__, help="time to first token, SSE route vs direct"
    )
    # SUPPRESS: without the option here, `--requests` before `ttft` counts.
    first_token.add_argument(
        "--requests", type=bounded, default=argparse.SUPPRESS, help="rounds (default 30)"
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
    benchmarks.add_parser(
        "moderation", description=evaluate.__doc__, help="moderation recall, false refusals, cost"
    )
    args = parser.parse_args()
    if args.benchmark == "moderation":
        evaluate.report(evaluate.run())
        return
    if args.benchmark == "load":
        if (args.requests, args.concurrency, args.throughput_requests) != (30, 8, 40):
            parser.error("give load's options after `load`; the others are not its options")
        if load.planned_seconds(args.sessions, args.duration) > turns.TIME_LIMIT_SECONDS // 2:
            parser.error(
                f"--sessions and --duration leave too little of the {turns.TIME_LIMIT_SECONDS} s "
                "time limit to start the stack and open the sessions"
            )
        load_report.report(
            asyncio.run(load.run(args.sessions, args.duration, args.load_concurrency))
        )
        return
    if args.benchmark == "ttft":
        if (args.concurrency, args.throughput_requests) != (8, 40):
            parser.error("--concurrency and --throughput-requests are not options of ttft")
        ttft.report(asyncio.run(ttft.run(args.requests)))
        return
    results = asyncio.run(turns.run(args.requests, args.concurrency, args.throughput_requests))
    turns.report(results)


if __name__ == "__main__":
    main()
