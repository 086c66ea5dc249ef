"""The events activity: publish one record to Kafka, retried by Temporal until the broker takes it.

The producer is opened on first use, not at worker start, so a worker starts (and turns
keep running) while the broker is down; the records wait in workflow history meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from opentelemetry import context as otel_context
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.propagate import extract
from temporalio import activity
from temporalio.common import MetricMeter

from core.codec import CodecKeyError, CodecKeys
from core.connections import kafka_options
from core.event_content import sealed
from core.settings import ConfigurationError, Settings

log = logging.getLogger("orchestrator.events")
_SEND_TIMEOUT_SECONDS = 15


@dataclass
class PublishRequest:
    topic: str
    key: str
    value: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class EventPublisher:
    def __init__(self, settings: Settings, meter: MetricMeter) -> None:
        self._settings = settings
        self._published = meter.create_counter(
            "orchestrator_events_published_total", "Event publish attempts by topic and outcome."
        )
        self._clients: tuple[AIOKafkaProducer, AIOKafkaAdminClient] | None = None
        self._lock = asyncio.Lock()
        #: The payload codec's keys, when events leave with their content sealed.
        self._keys: CodecKeys | None = None
        if settings.events_encrypt_content:
            try:
                self._keys = CodecKeys.load_or_create(
                    settings.codec_key_path, create=settings.dev_mode
                )
            except CodecKeyError as error:
                raise ConfigurationError(f"ORCH_CODEC_KEY_FILE: {error}") from None

    async def close(self) -> None:
        if self._clients is not None:
            await self._discard(self._clients)

    @activity.defn(name="events.publish")
    async def publish(self, request: PublishRequest) -> None:
        clients = await self._connected()
        producer, admin = clients
        try:
            async with asyncio.timeout(_SEND_TIMEOUT_SECONDS):
                # Checked before every send: a broker that restarted empty (the embedded one
                # keeps nothing) acknowledges records for a topic it no longer has, and drops them.
                if request.topic not in await admin.list_topics():
                    await ensure_topics(admin, self._settings)
                # The producer span joins the event's own trace (its recorded traceparent),
                # not the workflow run's, which holds the first turn's.
                with _in_trace_of(request):
                    value = sealed(request.value, self._keys) if self._keys else request.value
                    await producer.send_and_wait(
                        request.topic,
                        key=request.key.encode(),
                        value=json.dumps(value, separators=(",", ":")).encode(),
                        headers=_headers(request.headers),
                    )
        except (KafkaError, TimeoutError):
            self._published.add(1, {"topic": request.topic, "outcome": "failed"})
            await self._discard(clients)  # Temporal retries with fresh connections
            raise
        self._published.add(1, {"topic": request.topic, "outcome": "published"})

    async def _connected(self) -> tuple[AIOKafkaProducer, AIOKafkaAdminClient]:
        async with self._lock:
            if self._clients is None:
                admin = AIOKafkaAdminClient(**kafka_options(self._settings))
                producer = AIOKafkaProducer(
                    **kafka_options(self._settings),
                    enable_idempotence=self._settings.kafka_idempotence,
                    acks="all",
                    request_timeout_ms=10_000,
                )
                try:
                    await admin.start()
                    await ensure_topics(admin, self._settings)
                    await producer.start()
                except BaseException:
                    await _stop(producer, admin)
                    raise
                self._clients = (producer, admin)
            return self._clients

    async def _discard(self, clients: tuple[AIOKafkaProducer, AIOKafkaAdminClient]) -> None:
        async with self._lock:
            if self._clients is clients:
                self._clients = None
        await _stop(*clients)


async def _stop(producer: AIOKafkaProducer, admin: AIOKafkaAdminClient) -> None:
    with contextlib.suppress(KafkaError, OSError):
        await producer.stop()
    with contextlib.suppress(KafkaError, OSError):
        await admin.close()


@contextlib.contextmanager
def _in_trace_of(request: PublishRequest) -> Iterator[None]:
    traceparent = request.headers.get("traceparent")
    if not traceparent:
        yield
        return
    token = otel_context.attach(extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


def _headers(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    """The record's headers. Where the producer is instrumented, its span (a child of the
    turn's trace) writes `traceparent` itself, and the recorded one would be a second."""
    traced = AIOKafkaInstrumentor().is_instrumented_by_opentelemetry
    return [(k, v.encode()) for k, v in headers.items() if not (traced and k == "traceparent")]


def new_topic(name: str, settings: Settings) -> NewTopic:
    """A topic as the settings shape it: partitions, replication factor, retention."""
    retention = settings.kafka_topic_retention_ms
    return NewTopic(
        name,
        num_partitions=settings.kafka_topic_partitions,
        replication_factor=settings.kafka_topic_replication_factor,
        topic_configs={} if retention is None else {"retention.ms": str(retention)},
    )


async def ensure_topics(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    """Create the event topics (docs/interface.md, section 5) if the cluster does not have them."""
    existing = set(await admin.list_topics())
    wanted = [settings.conversation_events_topic, settings.training_audit_topic]
    missing = [new_topic(name, settings) for name in wanted if name not in existing]
    if missing:
        with contextlib.suppress(TopicAlreadyExistsError):  # another process was first
            await admin.create_topics(missing)
        log.info("created topics %s", [topic.name for topic in missing])
