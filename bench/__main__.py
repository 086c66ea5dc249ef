"""`python -m bench`: the conversation-turn benchmark; a report, so it exits 0 when a target is missed."""

from __future__ import annotations

import argparse
import asyncio

from bench import turns


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
    args = parser.parse_args()
    results = asyncio.run(turns.run(args.requests, args.concurrency, args.throughput_requests))
    turns.report(results)


if __name__ == "__main__":
    main()
