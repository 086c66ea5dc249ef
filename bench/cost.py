"""`python -m bench cost`: what a turn costs each process in CPU, beside Temporal's floor.

Starts the embedded stack as `bench.load` does (replies of 8 tokens, a context of at most 64
tokens, every tenant's limits out of reach), then takes the same fixed load three times:
`--turns` turns by `--concurrency` clients, each client on a session of its own, after a
warm-up of `WARM_UP_TURNS` turns per client.

1. The product: steps through the API. The CPU time (user and system, whole process tree,
   from /proc) each service spends over the turns, per turn: the API, the worker (workflows
   and activities, both moderation checks included), the Temporal dev server, Redis, the
   broker and the SLM server.
2. The floor: the same turns as updates of a minimal session workflow (`bench.floor`, in a
   process of its own: Temporal's SDK with no code of ours, its activity sending the same
   completion to the SLM on a second task queue), measured the same way: the floor's worker,
   the Temporal dev server and the SLM server.
3. Profiles: the product's turns again with py-spy sampling the worker and the API, written
   as flame graphs (`bench/results/cost-worker.svg`, `cost-api.svg`). Apart from 1, as
   sampling takes CPU of its own on the same cores. py-spy samples the thread holding the
   GIL (Python's own work); what runs outside it (the Temporal SDK's core, the classifier's
   ONNX threads) shows in the CPU of the worker's and the API's threads, read by name.

Results land in `bench/results/cost.json`. Everything talks to 127.0.0.1; the floor's process
and py-spy are stopped by their pids.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench import floor, load, memory
from bench.harness import Target, print_targets, running_stack, user_token, write_results
from deploy.stack import EmbeddedStack
from workflows.conversation.context import SYSTEM_PROMPT

RESULTS = Path(__file__).parent / "results"
WARM_UP_TURNS = 3
#: py-spy's samples per second: enough for a flame graph, little beside a turn's cost.
SAMPLING_RATE = 100
#: The issue's targets, CPU-ms per turn (the worker's) and its ratio to the floor (Temporal's).
WORKER_MS, API_MS, TEMPORAL_RATIO = 35.0, 6.0, 1.2
#: The processes whose CPU is also read thread by thread.
THREADS_OF = ("worker", "api", "floor_worker")


class Rounds:
    """Turns by `concurrency` clients, each on a session of its own."""

    def __init__(self, concurrency: int, take: Callable[[str], Awaitable[None]]) -> None:
        self._sessions = [f"cost-{uuid.uuid4().hex[:12]}" for _ in range(concurrency)]
        self._take = take

    async def warm_up(self) -> None:
        """`WARM_UP_TURNS` turns per client: each session started, connections open."""
        await asyncio.gather(*(self._client(s, WARM_UP_TURNS) for s in self._sessions))

    async def take(self, turns: int) -> None:
        """`turns` turns in all, shared between the clients."""
        share, rest = divmod(turns, len(self._sessions))
        await asyncio.gather(
            *(self._client(s, share + (i < rest)) for i, s in enumerate(self._sessions))
        )

    async def _client(self, session: str, count: int) -> None:
        for _ in range(count):
            await self._take(session)


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    return {name: memory.tree_cpu_seconds(pid) for name, pid in pids.items()}


def _threads(pid: int) -> dict[str, float]:
    """CPU seconds so far of `pid`'s threads, summed by name with its digits dropped
    (`tokio-runtime-w`, the SDK's core; `ThreadPoolExecutor-_`; `python`, the event loop)."""
    found: dict[str, float] = {}
    for task in Path("/proc", str(pid), "task").iterdir():
        try:
            name = re.sub(r"\d+", "_", (task / "comm").read_text().strip())
            fields = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        found[name] = found.get(name, 0.0) + memory.stat_cpu_seconds(fields)
    return found


async def _measured(pids: dict[str, int], turns: int, rounds: Rounds) -> dict[str, Any]:
    """CPU-ms per turn of each of `pids` over `turns` turns of `rounds`, after its warm-up
    (which is not counted)."""
    await rounds.warm_up()
    threads = {n: pids[n] for n in THREADS_OF if n in pids}
    before, started = _cpu(pids), time.perf_counter()
    threads_before = {n: _threads(pid) for n, pid in threads.items()}
    await rounds.take(turns)
    seconds, after = time.perf_counter() - started, _cpu(pids)
    by_thread = {}
    for name, pid in threads.items():
        old, new = threads_before[name], _threads(pid)
        spent = {t: (new[t] - old.get(t, 0.0)) * 1000 / turns for t in new}
        by_thread[name] = {t: ms for t, ms in sorted(spent.items(), key=lambda i: -i[1]) if ms}
    return {
        "seconds": seconds,
        "turns_per_second": turns / seconds,
        "cpu_ms_per_turn": {n: (after[n] - before[n]) * 1000 / turns for n in pids},
        "cpu_ms_per_turn_by_thread": by_thread,
    }


class Product:
    def __init__(self, http: httpx.AsyncClient, stack: EmbeddedStack) -> None:
        self.turns = load.Turns(http, stack, user_token(stack))

    async def take(self, session: str) -> None:
        await self.turns.take("step", session)


class Floor:
    """The floor's worker in a process of its own, and turns through it."""

    def __init__(self, stack: EmbeddedStack, client: Client) -> None:
        self._stack, self._client = stack, client
        self._body = {
            **load_chat_body(stack),
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": load.PROMPT},
            ],
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> int:
        urls = self._stack.urls()
        self.process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench.floor", "--address", urls["temporal_address"]),
            *("--namespace", self._stack.settings.temporal_namespace),
            *("--chat-url", f"{urls['slm_base_url']}/chat/completions"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"the floor's worker did not start: {line!r}")
        return self.process.pid

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    async def take(self, session: str) -> None:
        await floor.session_turn(self._client, session, self._body)


def load_chat_body(stack: EmbeddedStack) -> dict[str, Any]:
    """The product's completion for a load turn: its model, reply length and sampling."""
    return {
        "model": stack.settings.slm_model,
        "max_tokens": load.REPLY_TOKENS,
        "temperature": 0.7,
    }


async def _profiled(pids: dict[str, int], rounds: Rounds, turns: int) -> dict[str, str]:
    """`turns` turns of `rounds` (after its warm-up) with py-spy sampling each of `pids`;
    each flame graph's path, or why none."""
    await rounds.warm_up()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        missing = "py-spy is not installed: `make bench-cost` installs the test tools"
        return dict.fromkeys(pids, missing)
    spies = {
        name: await asyncio.create_subprocess_exec(
            *(spy, "record", "--pid", str(pid), "--rate", str(SAMPLING_RATE), "--gil"),
            *("--format", "flamegraph", "--output", str(RESULTS / f"cost-{name}.svg")),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for name, pid in pids.items()
    }
    await asyncio.sleep(1)  # attached
    try:
        await rounds.take(turns)
    finally:
        for process in spies.values():
            if process.returncode is None:
                process.send_signal(signal.SIGINT)  # py-spy writes its graph on SIGINT
    found = {}
    for name, process in spies.items():
        _, error = await process.communicate()
        path = RESULTS / f"cost-{name}.svg"
        found[name] = (
            str(path.relative_to(RESULTS.parent.parent))
            if path.exists()
            else (f"py-spy failed: {error.decode(errors='replace').strip()[-300:]}")
        )
    return found


async def measure(stack: EmbeddedStack, turns: int, concurrency: int) -> dict[str, Any]:
    pids = stack.pids()
    limits = httpx.Limits(max_connections=4 * concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        client = await Client.connect(
            stack.settings.temporal_address, namespace=stack.settings.temporal_namespace
        )
        product = Product(http, stack)
        floor_ = Floor(stack, client)
        floor_pid = await floor_.start()
        try:
            floor_pids = {n: pids[n] for n in ("temporal", "slm")} | {"floor_worker": floor_pid}
            rows = {
                "product": await _measured(pids, turns, Rounds(concurrency, product.take)),
                "floor": await _measured(floor_pids, turns, Rounds(concurrency, floor_.take)),
            }
        finally:
            await floor_.stop()
        profiles = await _profiled(
            {n: pids[n] for n in ("worker", "api")},
            Rounds(concurrency, product.take),
            turns,
        )
    return {
        "turns": turns,
        "concurrency": concurrency,
        "max_reply_tokens": load.REPLY_TOKENS,
        "context_token_budget": load.CONTEXT_TOKENS,
        **rows,
        "profiles": profiles,
        **product.turns.tally(),
    }


def targets(results: dict[str, Any]) -> list[Target]:
    product = results["product"]["cpu_ms_per_turn"]
    floor_ = results["floor"]["cpu_ms_per_turn"]
    ratio = product["temporal"] / floor_["temporal"] if floor_["temporal"] else float("inf")
    errors, worker, api = results["errors"], product["worker"], product["api"]
    return [
        ("errors", errors, "== 0", errors == 0),
        ("worker CPU per turn (ms)", worker, f"<= {WORKER_MS:g}", worker <= WORKER_MS),
        ("API CPU per turn (ms)", api, f"<= {API_MS:g}", api <= API_MS),
        ("Temporal CPU per turn / floor's", ratio, f"<= {TEMPORAL_RATIO}", ratio <= TEMPORAL_RATIO),
    ]


async def run(turns: int, concurrency: int) -> dict[str, Any]:
    async with running_stack("cost", load.environment(load.FULL_CACHE)) as stack:
        results = await measure(stack, turns, concurrency)
    write_results(RESULTS / "cost.json", results, targets(results))
    return results


def report(results: dict[str, Any]) -> None:
    product = results["product"]["cpu_ms_per_turn"]
    floor_ = results["floor"]["cpu_ms_per_turn"]
    print(f"\nCPU-ms per turn, {results['turns']} turns by {results['concurrency']} clients:")
    print(f"{'process':16}{'product':>10}{'floor':>10}")
    for name in ("api", "worker", "floor_worker", "temporal", "redis", "kafka", "slm"):
        mine, theirs = product.get(name), floor_.get(name)
        cells = [f"{v:>10.1f}" if v is not None else f"{'-':>10}" for v in (mine, theirs)]
        print(f"{name:16}{''.join(cells)}")
    for kind in ("product", "floor"):
        print(f"{kind} turns/s: {results[kind]['turns_per_second']:.2f}")
    for kind in ("product", "floor"):
        for name, threads in results[kind]["cpu_ms_per_turn_by_thread"].items():
            shown = ", ".join(f"{t} {ms:.1f}" for t, ms in list(threads.items())[:6])
            print(f"{name} by thread (ms per turn): {shown}")
    for name, where in results["profiles"].items():
        print(f"flame graph, {name}: {where}")
    print_targets(targets(results), RESULTS / "cost.json")
