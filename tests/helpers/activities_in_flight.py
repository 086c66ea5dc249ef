"""Waiting until a workflow's activity is in a worker's hands: the moment fault tests strike."""

from __future__ import annotations

import asyncio

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import Client
from temporalio.service import RPCError


async def wait_until_started(
    temporal: Client, workflow_id: str, activity_type: str, timeout: float = 60
) -> None:
    """Return once `activity_type` of `workflow_id` is running on a worker."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                description = await temporal.get_workflow_handle(workflow_id).describe()
                pending = description.raw_description.pending_activities
            except RPCError:
                pending = []  # the workflow is not started yet
            if any(
                p.activity_type.name == activity_type
                and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                for p in pending
            ):
                return
            await asyncio.sleep(0.05)
