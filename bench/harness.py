"""What every benchmark shares: the embedded stack it runs on, restarting its product with
other settings, percentiles, rotating paths, the token, and writing and printing results."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from core.tokens import mint_token
from deploy.services import DevPorts
from deploy.stack import EmbeddedStack

WARM_UP = 3
TIME_LIMIT_SECONDS = 15 * 60

T = TypeVar("T")
#: A target: its name, the measured value, the goal as text, and whether it was met.
Target = tuple[str, float, str, bool]


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    return {f"p{int(q * 100)}": percentile(values, q) * scale for q in (0.5, 0.9, 0.99)}


async def rotated(
    calls: Mapping[str, Callable[[], Awaitable[T]]], rounds: int
) -> dict[str, list[T]]:
    """`rounds` of one request per path, the order rotating, so no path always goes first."""
    samples: dict[str, list[T]] = {name: [] for name in calls}
    order = list(calls)
    for _ in range(rounds):
        for name in order:
            samples[name].append(await calls[name]())
        order = order[1:] + order[:1]
    return samples


def user_token(stack: EmbeddedStack) -> str:
    return mint_token(stack.settings, tenant="bench", roles=["user"])


@asynccontextmanager
async def running_stack(
    name: str, environment: dict[str, str], time_limit: float = TIME_LIMIT_SECONDS
) -> AsyncIterator[EmbeddedStack]:
    """The embedded stack on free ports in a new temporary data dir, its worker and API with
    the ORCH_ settings of `environment`, within `time_limit` seconds."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    stack = EmbeddedStack(data_dir, DevPorts.free())
    stack.environment.update(environment)  # the product's processes only, as `restart` does
    try:
        async with asyncio.timeout(time_limit):
            await stack.start()
            yield stack
    finally:
        await stack.stop()
    shutil.rmtree(data_dir)  # kept when the run fails: the service logs are in it


async def restart(stack: EmbeddedStack, names: tuple[str, ...], settings: dict[str, str]) -> None:
    """Start `names` of the product afresh with `settings` (ORCH_ variables) over its own."""
    await stack.stop(names)
    stack.environment.update(settings)
    await stack.start(names)


def write_results(path: Path, results: dict[str, Any], rows: list[Target]) -> None:
    results["targets"] = {name: {"value": v, "goal": g, "met": m} for name, v, g, m in rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def print_targets(rows: list[Target], written_to: Path) -> None:
    print(f"\n{'target':40}{'value':>10}{'goal':>12}")
    for name, value, goal, met in rows:
        print(f"{name:40}{value:>10.2f}{goal:>12}  {'MET' if met else 'MISSED'}")
    print(f"\nwritten to {written_to}")
