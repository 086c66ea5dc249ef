"""A workflow that only the tests run: it calls the worker's activities on their real queues."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.events import PublishRequest
    from activities.slm import Completion, CompletionRequest
    from core.messages import ChatMessage


@dataclass
class ProbeInput:
    prompt: str
    max_tokens: int
    slm_task_queue: str
    task_queue: str
    topic: str
    key: str


@workflow.defn
class ProbeWorkflow:
    @workflow.run
    async def run(self, probe: ProbeInput) -> Completion:
        completion: Completion = await workflow.execute_activity(
            "slm.complete",
            CompletionRequest(
                messages=[ChatMessage("user", probe.prompt)], max_tokens=probe.max_tokens
            ),
            task_queue=probe.slm_task_queue,
            start_to_close_timeout=timedelta(seconds=120),
            heartbeat_timeout=timedelta(seconds=10),
            result_type=Completion,
        )
        await workflow.execute_activity(
            "events.publish",
            PublishRequest(
                topic=probe.topic,
                key=probe.key,
                value={"reply": completion.text},
                headers={"event_id": probe.key},
            ),
            task_queue=probe.task_queue,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=2)),
        )
        return completion
