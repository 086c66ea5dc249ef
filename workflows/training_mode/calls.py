"""The training-lock activities, each with its timeouts and retries. Workflow code only.

Transitions give Redis a few seconds: an admin waiting on enable or disable is told 503
(and nothing changes) rather than kept waiting while Redis is away.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from core.training_lock import (
        AcquireResult,
        Lease,
        LeaseRequest,
        ReadRequest,
        ReadResult,
        ReleaseRequest,
        RenewResult,
    )

_BRIEF_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), backoff_coefficient=2, maximum_attempts=3
)
T = TypeVar("T")


async def _brief(name: str, argument: object, result_type: type[T]) -> T:
    result: T = await workflow.execute_activity(
        name,
        argument,
        start_to_close_timeout=timedelta(seconds=5),
        schedule_to_close_timeout=timedelta(seconds=20),
        retry_policy=_BRIEF_RETRY,
        result_type=result_type,
    )
    return result


async def acquire(tenant: str, lease: Lease) -> AcquireResult:
    return await _brief("training.acquire", LeaseRequest(tenant, lease), AcquireResult)


async def renew(tenant: str, lease: Lease) -> RenewResult:
    return await _brief("training.renew", LeaseRequest(tenant, lease), RenewResult)


async def release(tenant: str, token: str, expires_at: str = "") -> bool:
    """Release the lease of `token`; `expires_at` (when known) bounds how long its token is
    remembered as released."""
    return await _brief("training.release", ReleaseRequest(tenant, token, expires_at), bool)


async def read(tenant: str) -> ReadResult:
    """A local activity beside the input check: marks a conversation turn."""
    result: ReadResult = await workflow.execute_local_activity(
        "training.read",
        ReadRequest(tenant),
        start_to_close_timeout=timedelta(seconds=2),
        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2),
        result_type=ReadResult,
    )
    return result
