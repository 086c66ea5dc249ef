"""Reading what really reached the broker: the tests' view of the event topics."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer


async def records_for_key(
    bootstrap: str,
    topic: str,
    key: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60,
) -> list[dict[str, Any]]:
    """Every record with `key` in `topic`, from the start, read until `until(records)` holds.

    Each record is its JSON value with its Kafka headers under "_headers".
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=f"test-{uuid.uuid4()}",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while not until(found):
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    for record in batch:
                        if record.key == key.encode():
                            value = json.loads(record.value)
                            value["_headers"] = {k: v.decode() for k, v in record.headers}
                            found.append(value)
    finally:
        await consumer.stop()
    return found
