"""ErasureWorkflow (`erasure:<tenant>:<job>`): delete sessions from everywhere the product
keeps them, each followed by its tombstone, the `conversation.deleted` event.

A session is deleted by one idempotent activity (activities/erasure.py: marked deleted in
Redis so its id is never started again, its turn in flight cancelled, every run of its chain
deleted from Temporal, its Redis keys removed); then the tombstone is published with the
session's key, so consumers (and compacted topics) drop what they hold of it. A crash
anywhere resumes where it stopped; a broker outage delays the tombstones, never skips one.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.erasure import SessionRef, SubjectSessions
    from core.workflow_ids import conversation_id
    from workflows import outbox
    from workflows.cloudevents import deleted_event
    from workflows.erasure.types import ErasureProgress, ErasureRequest

_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))


# Outside the sandbox, as ConversationWorkflow: deterministic by its code (workflow APIs
# only); the modules of its activities' types load Redis and OpenTelemetry lazily, which the
# sandbox would warn of at every worker start.
@workflow.defn(sandboxed=False)
class ErasureWorkflow:
    def __init__(self) -> None:
        self._progress = ErasureProgress()

    @workflow.run
    async def run(self, request: ErasureRequest) -> ErasureProgress:
        sessions = list(request.session_ids)
        if request.subject is not None:
            owned: list[str] = await workflow.execute_activity(
                "erasure.find_sessions",
                SubjectSessions(request.tenant, request.subject),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=_RETRY,
                result_type=list[str],
            )
            sessions += [s for s in owned if s not in sessions]
        self._progress.sessions_found = len(sessions)
        for session_id in sessions:
            await workflow.execute_activity(
                "erasure.delete_session",
                SessionRef(request.tenant, session_id),
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=_RETRY,
            )
            tombstone = [
                deleted_event(
                    request,
                    session_id,
                    conversation_id(request.tenant, session_id),
                    workflow.now(),
                )
            ]
            while tombstone:  # a broker outage: publish returns after a pause, go again
                await outbox.publish(tombstone)
            self._progress.sessions_deleted += 1
        return self._progress

    @workflow.query
    def progress(self) -> ErasureProgress:
        return self._progress
