"""The events activity: publish one record to Kafka, retried by Temporal until the broker takes it.

The producer is opened on first use, not at worker start, so a worker starts (and turns
keep running) while the broker is down; the records wait in workflow history meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from temporalio import activity

from core.settings import Settings

log = logging.getLogger("orchestrator.events")


@dataclass
class PublishRequest:
    topic: str
    key: str
    value: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class EventPublisher:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    @activity.defn(name="events.publish")
    async def publish(self, request: PublishRequest) -> None:
        producer = await self._started()
        await producer.send_and_wait(
            request.topic,
            key=request.key.encode(),
            value=json.dumps(request.value, separators=(",", ":")).encode(),
            headers=[(name, value.encode()) for name, value in request.headers.items()],
        )

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                await ensure_topics(self._settings)
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap,
                    enable_idempotence=self._settings.kafka_idempotence,
                    acks="all",
                )
                try:
                    await producer.start()
                except Exception:
                    await producer.stop()
                    raise
                self._producer = producer
            return self._producer


async def ensure_topics(settings: Settings) -> None:
    """Create the event topics (CONTRACT section 5) if the cluster does not have them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [settings.conversation_events_topic, settings.training_audit_topic]
        missing = [
            NewTopic(name, num_partitions=1, replication_factor=1)
            for name in wanted
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass  # another process created it between the listing and now
            log.info("created topics %s", [topic.name for topic in missing])
    finally:
        await admin.close()
