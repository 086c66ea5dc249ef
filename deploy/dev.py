"""`orchestrator dev`: run the embedded stack in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from deploy import slm_server
from deploy.process import ServiceFailed
from deploy.services import DevPorts
from deploy.stack import INFRASTRUCTURE, PRODUCT, EmbeddedStack

_LABELS = {
    "api_url": "API",
    "temporal_ui_url": "Temporal UI",
    "temporal_address": "Temporal (gRPC)",
    "kafka_bootstrap": "Kafka broker",
    "redis_url": "Redis",
    "slm_base_url": "SLM (OpenAI API)",
    "data_dir": "Data dir",
}


async def run_dev(data_dir: Path, ports: DevPorts, services_only: bool) -> None:
    """Start the stack, print where everything is, and stop every child on a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    stack = EmbeddedStack(data_dir, ports)
    names = INFRASTRUCTURE if services_only else INFRASTRUCTURE + PRODUCT
    print(f"logs in {data_dir / 'logs'}", flush=True)
    if "slm" in names:
        print(f"slm: {_slm_variant(stack.settings.slm_cpu_variant)}", flush=True)
    starting = asyncio.create_task(
        stack.start(names, progress=lambda line: print(line, flush=True))
    )
    interrupted = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, interrupted}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()  # Ctrl-C during start-up: stack.start stops what it started
        await asyncio.gather(starting, return_exceptions=True)
        return
    interrupted.cancel()
    starting.result()  # raise ServiceFailed / MissingBinary to the command line

    urls = stack.urls()
    dev_file = data_dir / "dev.json"
    dev_file.write_text(json.dumps(urls, indent=2) + "\n")
    _print_table(urls, services_only, dev_file)
    stopped = asyncio.create_task(stop.wait())
    died = asyncio.create_task(stack.first_exit())
    try:
        await asyncio.wait({stopped, died}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        died.cancel()
        print("stopping ...", flush=True)
        await stack.stop()
        dev_file.unlink(missing_ok=True)
        print("stopped.", flush=True)
    if died.done() and not died.cancelled():
        # Nothing works without it: say which one and what to do, rather than fail every turn.
        raise ServiceFailed(died.result().exit_notice())


def _slm_variant(requested: str) -> str:
    """Which llama.cpp CPU variant the SLM server will load (it decides the same way)."""
    try:
        return slm_server.choose_for_machine(requested).describe()
    except slm_server.VariantError as error:
        return str(error)


def _print_table(urls: dict[str, str], services_only: bool, dev_file: Path) -> None:
    rows = dict(urls)
    if services_only:
        rows.pop("api_url")
    else:
        rows = {"api_url": urls["api_url"], "api_docs": f"{urls['api_url']}/docs", **rows}
    labels = {**_LABELS, "api_docs": "API docs"}
    width = max(len(labels[key]) for key in rows)
    lines = [f"  {labels[key]:<{width}}  {value}" for key, value in rows.items()]
    print("\n".join(["ready:", *lines, f"  (written to {dev_file}; Ctrl-C stops everything)"]))
    sys.stdout.flush()
