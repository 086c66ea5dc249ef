"""The erasure activities: find a subject's sessions, and delete one session from everywhere the
product keeps it (Temporal, Redis), for ErasureWorkflow (workflows/erasure/).

Both are idempotent: a session already gone is deleted again as a no-op, so Temporal may
retry either. The conversation workflow is reached by its public names (the `transcript`
query, the `cancel` update), as any client of it would.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from core.redis_keys import deleted_sessions_key, session_streams_pattern, turn_slots_key
from core.search_attributes import sessions_query
from core.workflow_ids import conversation_id

log = logging.getLogger("orchestrator.erasure")
#: How long the earlier runs of a chain may take to be deleted before the activity is retried.
_DELETION_WAIT_SECONDS = 60


@dataclass
class SubjectSessions:
    tenant: str
    subject: str


@dataclass
class SessionRef:
    tenant: str
    session_id: str


class ErasureActivities:
    def __init__(self, client: Client, redis: Redis) -> None:
        self._client = client
        self._redis = redis

    @activity.defn(name="erasure.find_sessions")
    async def find_sessions(self, request: SubjectSessions) -> list[str]:
        """The ids of every session `request.subject` owns in its tenant, as visibility
        knows them (each once: runs that continued as new are left out)."""
        found = set()
        async for execution in self._client.list_workflows(
            sessions_query(request.tenant, request.subject)
        ):
            found.add(execution.id.split(":", 2)[-1])
        return sorted(found)

    @activity.defn(name="erasure.delete_session")
    async def delete_session(self, ref: SessionRef) -> int:
        """Delete the session everywhere: mark it deleted (never started again), cancel its
        turn in flight, delete every run of its chain, then its Redis keys. The number of
        runs deleted (0: it was gone already)."""
        await self._redis.sadd(deleted_sessions_key(ref.tenant), ref.session_id)
        workflow_id = conversation_id(ref.tenant, ref.session_id)
        await self._cancel_running_turn(workflow_id)
        chain = self._client.list_workflows(f"WorkflowId = '{workflow_id}'")
        runs = {execution.run_id async for execution in chain}
        current = await self._current_run(workflow_id)
        # The earlier runs first, and gone, before the current one: once the current run is
        # deleted, Temporal no longer deletes the runs it continued from.
        earlier = sorted(runs - {current})
        deleted = 0
        for run_id in earlier:
            deleted += await self._delete_run(workflow_id, run_id)
        await self._until_gone(workflow_id, earlier)
        if current:
            deleted += await self._delete_run(workflow_id, current)
        keys = [k async for k in self._redis.scan_iter(match=session_streams_pattern(workflow_id))]
        keys.append(turn_slots_key(ref.tenant, ref.session_id))
        for key in keys:  # one by one: behind a cluster, keys of one call share a slot
            await self._redis.delete(key)
        log.info("session deleted", extra={"workflow_id": workflow_id, "runs": deleted})
        return deleted

    async def _cancel_running_turn(self, workflow_id: str) -> None:
        """Cancel the session's turn in flight, if any, so that its stream ends cancelled."""
        handle = self._client.get_workflow_handle(workflow_id)
        try:
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                return
            view = await handle.query("transcript", {"limit": 0, "before_turn": 0})
            running = int(view.get("running_turn", 0)) if isinstance(view, dict) else 0
            if running:
                await handle.execute_update("cancel", {"turn": running})
        except WorkflowUpdateFailedError:
            pass  # it ended meanwhile
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise

    async def _current_run(self, workflow_id: str) -> str:
        """The chain's current run; "" when there is none (deleted, or never started)."""
        try:
            return (await self._client.get_workflow_handle(workflow_id).describe()).run_id
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            return ""

    async def _until_gone(self, workflow_id: str, runs: list[str]) -> None:
        """Wait until Temporal deleted `runs` (it does so shortly after it is asked)."""
        async with asyncio.timeout(_DELETION_WAIT_SECONDS):
            for run_id in runs:
                handle = self._client.get_workflow_handle(workflow_id, run_id=run_id)
                while True:
                    activity.heartbeat()
                    try:
                        await handle.describe()
                    except RPCError as error:
                        if error.status == RPCStatusCode.NOT_FOUND:
                            break
                        raise
                    await asyncio.sleep(0.2)

    async def _delete_run(self, workflow_id: str, run_id: str) -> int:
        """Delete one run (a running one is terminated first); 0 if it was gone."""
        try:
            await self._client.workflow_service.delete_workflow_execution(
                DeleteWorkflowExecutionRequest(
                    namespace=self._client.namespace,
                    workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id),
                )
            )
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return 0
            raise
        return 1
