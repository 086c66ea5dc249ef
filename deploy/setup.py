"""`orchestrator setup [--dry-run]`: make the real services hold what the product needs.

Idempotent: each step reads what is there, prints it, and changes only what differs.

- the Temporal namespace (`ORCH_TEMPORAL_NAMESPACE`), registered if absent, its retention
  set to `ORCH_TEMPORAL_RETENTION_DAYS` (a closed session id is refused only while its
  closed workflow is retained);
- the search attributes (core/search_attributes.py);
- the two event topics, with `ORCH_KAFKA_TOPIC_PARTITIONS` partitions (added, never
  removed), `ORCH_KAFKA_TOPIC_REPLICATION_FACTOR` (at creation) and
  `ORCH_KAFKA_TOPIC_RETENTION_MS` (when set).

`--dry-run` prints what it would change and changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities.events import new_topic
from core import search_attributes
from core.connections import connect_temporal, kafka_options, temporal_config
from core.errors import DependencyUnavailable
from core.settings import ConfigurationError, Settings


class Plan:
    """The steps as they are printed, and the changes counted (made, or in a dry run due)."""

    def __init__(self, dry_run: bool, say: Callable[[str], None]) -> None:
        self.dry_run = dry_run
        self.changes = 0
        self._say = say

    def same(self, subject: str, state: str) -> None:
        self._say(f"  {subject}: {state}, unchanged")

    def change(self, subject: str, state: str, change: str) -> bool:
        """Print a change; True when it is to be made now (not a dry run)."""
        self.changes += 1
        self._say(f"  {subject}: {state}; {'would ' if self.dry_run else ''}{change}")
        return not self.dry_run

    def note(self, text: str) -> None:
        self._say(text)


async def run_setup(settings: Settings, dry_run: bool, say: Callable[[str], None] = print) -> int:
    """Every step, in order; the number of changes made (or due, in a dry run)."""
    plan = Plan(dry_run, say)
    # The namespace the API and the workers use: ORCH_TEMPORAL_NAMESPACE, or the SDK's.
    config = temporal_config(settings)
    target, namespace = config["target_host"], config["namespace"]
    plan.note(f"Temporal at {target}, namespace {namespace}:")
    try:
        client = await connect_temporal(settings)
        registered = await _namespace(client, namespace, settings.temporal_retention_days, plan)
        await _search_attributes(client, namespace, plan, registered)
    except RPCError as error:
        raise DependencyUnavailable(f"Temporal at {target}: {error.message}") from None
    except RuntimeError as error:
        raise DependencyUnavailable(f"cannot reach Temporal at {target}: {error}") from None
    plan.note(f"Kafka at {settings.kafka_bootstrap}:")
    try:
        await _topics(settings, plan)
    except KafkaError as error:
        raise DependencyUnavailable(f"Kafka at {settings.kafka_bootstrap}: {error}") from None
    if plan.changes == 0:
        plan.note("Nothing to change.")
    else:
        verb = "would change" if dry_run else "changed"
        plan.note(f"{plan.changes} {'thing' if plan.changes == 1 else 'things'} {verb}.")
    return plan.changes


async def _namespace(client: Client, name: str, days: int, plan: Plan) -> bool:
    """Whether the namespace exists (or was just registered)."""
    retention = Duration()
    retention.FromTimedelta(timedelta(days=days))
    subject = f"namespace {name}"
    try:
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=name)
        )
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
        if plan.change(subject, "absent", f"register it, retention {days} days"):
            request = RegisterNamespaceRequest(
                namespace=name, workflow_execution_retention_period=retention
            )
            await client.workflow_service.register_namespace(request)
            return True
        return False
    current = described.config.workflow_execution_retention_ttl.ToTimedelta()
    if current == timedelta(days=days):
        plan.same(subject, f"retention {days} days")
    elif plan.change(subject, f"retention {current}", f"set retention to {days} days"):
        await client.workflow_service.update_namespace(
            UpdateNamespaceRequest(
                namespace=name, config=NamespaceConfig(workflow_execution_retention_ttl=retention)
            )
        )
    return True


async def _search_attributes(client: Client, name: str, plan: Plan, namespace_exists: bool) -> None:
    custom: dict[str, IndexedValueType.ValueType] = {}
    if namespace_exists:
        custom = await _custom_attributes(client, name)
    missing: dict[str, IndexedValueType.ValueType] = {}
    for key in search_attributes.ALL:
        wanted = IndexedValueType.ValueType(int(key.indexed_value_type))
        kind = IndexedValueType.Name(wanted).removeprefix("INDEXED_VALUE_TYPE_").title()
        subject = f"search attribute {key.name} ({kind})"
        have = custom.get(key.name)
        if have is None:
            if plan.change(subject, "absent", "create it"):
                missing[key.name] = wanted
        elif have != wanted:
            other = IndexedValueType.Name(have).removeprefix("INDEXED_VALUE_TYPE_").title()
            raise ConfigurationError(
                f"ORCH_TEMPORAL_NAMESPACE: search attribute {key.name} exists as {other} in "
                f"{name}; the product needs {kind}: remove it, or use another namespace"
            )
        else:
            plan.same(subject, "exists")
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=name, search_attributes=missing)
        )


async def _custom_attributes(
    client: Client, namespace: str
) -> dict[str, IndexedValueType.ValueType]:
    """The namespace's custom search attributes; a namespace just registered may take a
    few seconds to be seen by every Temporal service."""
    for _ in range(60):
        try:
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=namespace)
            )
            return dict(listed.custom_attributes)
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            await asyncio.sleep(0.5)
    raise DependencyUnavailable(f"namespace {namespace} registered but not yet visible; re-run")


async def _topics(settings: Settings, plan: Plan) -> None:
    admin = AIOKafkaAdminClient(**kafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        for name in (settings.conversation_events_topic, settings.training_audit_topic):
            if name in existing:
                await _existing_topic(admin, name, settings, plan)
                continue
            topic = new_topic(name, settings)
            shape = f"{_partitions(topic.num_partitions)}, replication {topic.replication_factor}"
            if plan.change(f"topic {name}", "absent", f"create it ({shape})"):
                await admin.create_topics([topic])
    finally:
        await admin.close()


async def _existing_topic(
    admin: AIOKafkaAdminClient, name: str, settings: Settings, plan: Plan
) -> None:
    subject = f"topic {name}"
    (described,) = await admin.describe_topics([name])
    count, wanted = len(described["partitions"]), settings.kafka_topic_partitions
    if count < wanted:
        if plan.change(subject, _partitions(count), f"add partitions up to {wanted}"):
            await admin.create_partitions({name: NewPartitions(total_count=wanted)})
    else:
        plan.same(subject, _partitions(count))
    retention = settings.kafka_topic_retention_ms
    if retention is None:
        return
    resource = ConfigResource(ConfigResourceType.TOPIC, name)
    (response,) = await admin.describe_configs([resource])
    entries = {entry[0]: entry[1] for entry in response.resources[0][4]}
    current = entries.get("retention.ms")
    if current == str(retention):
        plan.same(subject, f"retention.ms {current}")
    elif plan.change(subject, f"retention.ms {current}", f"set retention.ms to {retention}"):
        configs = {"retention.ms": str(retention)}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)])


def _partitions(count: int) -> str:
    return f"{count} partition{'' if count == 1 else 's'}"
