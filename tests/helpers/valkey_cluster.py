"""A real three-node Valkey cluster (the `valkey-server` of the dev stack's package), started
for a test and stopped by pid: the 16 384 slots split in three, each node a master."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from core.settings import Settings
from deploy.services import DevPorts, free_ports, redis_argv

SLOTS = 16384


@asynccontextmanager
async def valkey_cluster(directory: Path) -> AsyncIterator[list[int]]:
    """The ports of the cluster's three nodes, once every node says `cluster_state:ok`."""
    ports = free_ports(3)
    server = redis_argv(Settings(data_dir=directory), DevPorts.free())[0]
    processes = []
    try:
        for port in ports:
            node = directory / f"node-{port}"
            node.mkdir(parents=True)
            processes.append(
                subprocess.Popen(
                    [
                        server,
                        "--bind",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--dir",
                        str(node),
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],  # fmt: skip
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        clients = [Redis(host="127.0.0.1", port=port) for port in ports]
        for client in clients:
            await _until(client.ping)
        share = SLOTS // len(ports)
        for index, client in enumerate(clients):
            last = SLOTS - 1 if index == len(ports) - 1 else (index + 1) * share - 1
            await client.execute_command("CLUSTER", "ADDSLOTSRANGE", index * share, last)
        for port in ports[1:]:
            await clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port)

        async def ready() -> bool:
            infos = [await c.execute_command("CLUSTER", "INFO") for c in clients]
            return all(b"cluster_state:ok" in info for info in infos)

        await _until(ready)
        for client in clients:
            await client.aclose()
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


async def _until(check: Callable[[], Awaitable[object]], seconds: float = 20) -> None:
    async with asyncio.timeout(seconds):
        while True:
            try:
                if await check():
                    return
            except (RedisConnectionError, OSError):
                pass  # not up yet
            await asyncio.sleep(0.1)
