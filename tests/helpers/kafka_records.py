"""Reading what really reached the broker: the tests' view of the event topics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


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
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            # Read the partitions directly, without a consumer group: the embedded broker
            # forgets its topics when restarted, and a group would be slow to see them again.
            assigned = [
                TopicPartition(topic, partition)
                for partition in await _partitions(bootstrap, topic)
            ]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
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


async def _partitions(bootstrap: str, topic: str) -> list[int]:
    """The topic's partitions, once the producer has made it (describing never creates one)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        while True:
            if topic in await admin.list_topics():
                described = await admin.describe_topics([topic])
                partitions = sorted(p["partition"] for p in described[0]["partitions"])
                if partitions:
                    return partitions
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
