"""`orchestrator worker`: serves the orchestrator task queues until SIGTERM, then drains.

Two workers share one client: ORCH_TASK_QUEUE (the conversation and training-mode workflows,
moderation, events and the training lock) and ORCH_SLM_TASK_QUEUE (the SLM calls), so either
can be scaled alone with `--queue`.
ORCH_WORKER_METRICS_ADDRESS serves /healthz, /readyz and the Temporal SDK's metrics
(worker/health.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.erasure import ErasureActivities
from activities.events import EventPublisher
from activities.moderation import ModerationActivities
from activities.redis_stream import TurnStreams
from activities.slm import SlmActivities
from activities.tenant_policy import PolicyActivities
from activities.training_lock import TrainingLock
from core import policy_registry
from core.admission import Admission
from core.clients import open_redis
from core.connections import connect_temporal, temporal_config
from core.errors import DependencyUnavailable
from core.moderation.moderator import Moderator
from core.moderation.tenant_moderators import TenantModerators
from core.policy import load_policy
from core.settings import ConfigurationError, Settings
from core.telemetry import configure_tracing
from core.usage import UsageLedger
from worker.health import loopback_address, serving
from workflows.conversation.workflow import ConversationWorkflow
from workflows.erasure.workflow import ErasureWorkflow
from workflows.moderation.workflow import ModerationWorkflow
from workflows.tenant_policy.workflow import PolicyChangeWorkflow
from workflows.training_mode.workflow import TrainingModeWorkflow

log = logging.getLogger("orchestrator.worker")
_GRACEFUL_SHUTDOWN = timedelta(seconds=20)


async def run_worker(settings: Settings, queue: str | None = None) -> None:
    queues = [settings.task_queue, settings.slm_task_queue]
    if queue is not None and queue not in queues:
        raise ConfigurationError(f"--queue: expected one of {queues}, got {queue!r}")
    policy = load_policy(settings.policy_file)
    configure_tracing("orchestrator-worker")
    # The engine loads ONNX Runtime and scikit-learn (a second or two): only once the cheap
    # checks of the configuration have passed, so a mistake in it is said at once.
    from core.moderation.engine import Engine

    try:
        engine = Engine.load(policy, settings.moderation_threads, settings.moderation_spin)
    except ValueError as error:
        raise ConfigurationError(f"ORCH_POLICY_FILE: {error}") from None
    # The SDK's context goes into a `temporal_workflow` / `temporal_activity` field of each
    # JSON line; repeating it inside the message only makes the message unreadable.
    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False
    # The SDK serves its metrics on a loopback port; ours (worker/health.py) relays them.
    sdk_metrics = loopback_address() if settings.worker_metrics_address else None
    runtime = _runtime(sdk_metrics)
    try:
        client = await connect_temporal(settings, runtime=runtime)
    except RuntimeError as error:
        address = temporal_config(settings)["target_host"]
        raise DependencyUnavailable(
            f"cannot reach Temporal at {address} (ORCH_TEMPORAL_ADDRESS or TEMPORAL_ADDRESS): "
            f"{str(error).split(':')[0]}; start it (make services) or point the setting at it"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with AsyncExitStack() as resources:
        redis = open_redis(settings)
        resources.push_async_callback(redis.aclose)
        streams = TurnStreams(redis)
        moderator = Moderator(engine)
        resources.push_async_callback(moderator.close)
        moderators = TenantModerators(moderator, redis)
        lock = TrainingLock(redis, runtime.metric_meter)
        # What each queue serves; one Temporal worker per distinct queue, so the two may be
        # one queue (`ORCH_SLM_TASK_QUEUE` = `ORCH_TASK_QUEUE`): the SLM activity then runs
        # in the worker of its workflow, dispatched eagerly where the server allows it.
        served: dict[str, dict[str, Any]] = {}
        if queue in (None, settings.task_queue):
            publishing = asyncio.create_task(policy_registry.publish_until_done(redis, policy))
            resources.callback(publishing.cancel)
            publisher = EventPublisher(settings, runtime.metric_meter)
            resources.push_async_callback(publisher.close)
            moderation = ModerationActivities(moderators)
            policies = PolicyActivities(moderators, redis)
            erasure = ErasureActivities(client, redis)
            _serve(
                served,
                settings.task_queue,
                workflows=[
                    ConversationWorkflow,
                    TrainingModeWorkflow,
                    ErasureWorkflow,
                    ModerationWorkflow,
                    PolicyChangeWorkflow,
                ],
                max_cached_workflows=settings.worker_max_cached_workflows,
                activities=[
                    publisher.publish,
                    moderation.check,
                    moderation.scan,
                    policies.store,
                    lock.acquire,
                    lock.renew,
                    lock.release,
                    lock.read,
                    streams.append_activity,
                    erasure.find_sessions,
                    erasure.delete_session,
                ],
            )
        if queue in (None, settings.slm_task_queue):
            slm = SlmActivities(
                settings,
                moderators,
                streams,
                Admission(lock.read_lease),
                UsageLedger(redis, settings.quota_window_seconds, runtime.metric_meter),
            )
            resources.push_async_callback(slm.close)
            _serve(
                served,
                settings.slm_task_queue,
                activities=[slm.complete],
                # Heartbeats, which carry a turn's cancellation to its SLM call, reach the
                # server at least every half second (the SDK's default is 8 s here).
                max_heartbeat_throttle_interval=timedelta(milliseconds=500),
            )
        workers = [_worker(client, name, **options) for name, options in served.items()]
        if sdk_metrics is not None:
            endpoint = serving(settings, client, redis, workers, sdk_metrics)
            await resources.enter_async_context(endpoint)
        for worker in workers:
            await resources.enter_async_context(worker)
        log.info("worker serving %s", [w.task_queue for w in workers])
        await stop.wait()
        log.info("stopping: finishing running tasks (up to %ss)", _GRACEFUL_SHUTDOWN.seconds)
    log.info("worker stopped")


def _serve(served: dict[str, dict[str, Any]], task_queue: str, **options: Any) -> None:
    """Add `options` (workflows and activities are joined) to what `task_queue` serves."""
    queue = served.setdefault(task_queue, {"workflows": [], "activities": []})
    queue["workflows"] += options.pop("workflows", [])
    queue["activities"] += options.pop("activities", [])
    queue.update(options)


def _worker(client: Client, task_queue: str, **options: Any) -> Worker:
    return Worker(
        client, task_queue=task_queue, graceful_shutdown_timeout=_GRACEFUL_SHUTDOWN, **options
    )


def _runtime(sdk_metrics: str | None) -> Runtime:
    if sdk_metrics is None:
        return Runtime.default()
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=sdk_metrics)))
