"""A workflow that only the tests run: it fails with the message it is given."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError


@workflow.defn
class FailingWorkflow:
    @workflow.run
    async def run(self, message: str) -> None:
        raise ApplicationError(message, non_retryable=True)
