"""Turns sent straight to Temporal, for sessions started with settings the API would not
choose (a short idle timeout or time limit, continue-as-new every few turns, an SLM task
queue of the test's own). The real worker still runs the workflow."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from core.settings import Settings
from workflows.conversation.types import (
    ConversationSettings,
    ConversationState,
    TurnRequest,
    TurnResult,
)
from workflows.conversation.workflow import ConversationWorkflow


async def step_directly(
    temporal: Client,
    settings: Settings,
    session: str,
    request: TurnRequest,
    *,
    workflow_queue: str | None = None,
    **conversation: Any,
) -> TurnResult:
    """One turn of tenant `acme`'s `session`, starting it with `conversation` settings (on
    `workflow_queue`, by default the stack's)."""
    chosen: dict[str, Any] = {
        "slm_task_queue": settings.slm_task_queue,
        "events_topic": settings.conversation_events_topic,
        **conversation,
    }
    state = ConversationState(
        settings=ConversationSettings(tenant="acme", session_id=session, **chosen)
    )
    start = WithStartWorkflowOperation(
        ConversationWorkflow.run,
        state,
        id=f"conversation:acme:{session}",
        task_queue=workflow_queue or settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    result: TurnResult = await temporal.execute_update_with_start_workflow(
        ConversationWorkflow.step, request, start_workflow_operation=start
    )
    return result
