"""The activities a conversation turn calls, each with its timeouts and retries.

Workflow code: call these only from a workflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.redis_stream import AppendRequest
    from activities.slm import Completion, CompletionRequest
    from core.moderation.verdict import ModerationRequest, Verdict

_SLM_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=5,
)


async def moderate(
    text: str, stage: str, context: list[str] | None = None, asked: list[str] | None = None
) -> Verdict:
    """A local activity: fast, and its verdict is recorded in history (the engine or a guard
    model may change; a replay reads the verdict, never asks again)."""
    verdict: Verdict = await workflow.execute_local_activity(
        "moderation.check",
        ModerationRequest(text=text, stage=stage, context=context or [], asked=asked),
        start_to_close_timeout=timedelta(seconds=10),
        result_type=Verdict,
    )
    return verdict


def start_completion(
    request: CompletionRequest, task_queue: str, time_left: timedelta
) -> workflow.ActivityHandle[Completion]:
    """The SLM call on its own task queue, retries included within `time_left`; heartbeats
    let a lost worker be noticed in 10 s, and carry a cancellation to it (the SLM worker
    sends them every half second)."""
    return workflow.start_activity(
        "slm.complete",
        request,
        task_queue=task_queue,
        schedule_to_close_timeout=time_left,
        start_to_close_timeout=min(time_left, timedelta(seconds=120)),
        heartbeat_timeout=timedelta(seconds=10),
        retry_policy=_SLM_RETRY,
        result_type=Completion,
    )


async def append_stream(request: AppendRequest) -> list[str]:
    """A local activity: the workflow's own events of a streamed turn, in its Redis Stream."""
    ids: list[str] = await workflow.execute_local_activity(
        "stream.append",
        request,
        start_to_close_timeout=timedelta(seconds=5),
        retry_policy=RetryPolicy(maximum_attempts=3),
        result_type=list[str],
    )
    return ids
