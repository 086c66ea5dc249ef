"""`python -m bench`: the conversation-turn benchmark; `python -m bench ttft`: time to first
token; `python -m bench moderation`: the moderation policy on its held-out set.

Each is a report, so it exits 0 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio

from bench import ttft, turns
from bench.moderation import evaluate


def bounded(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 1000")
    return value


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
    benchmarks.add_parser(
        "moderation", description=evaluate.__doc__, help="moderation recall, false refusals, cost"
    )
    args = parser.parse_args()
    if args.benchmark == "moderation":
        evaluate.report(evaluate.run())
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
