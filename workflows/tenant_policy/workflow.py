"""PolicyChangeWorkflow (`policy:<tenant>:<change id>`): one accepted PUT /v1/policy.

The change is checked and stored as the tenant's next version (`policy.store`, idempotent),
then audited: a `policy.changed` CloudEvent on the audit topic, through the outbox, so a
broker outage delays the event and never loses it. The API answers with the stored
version once the store is done; the event follows.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.tenant_policy import PolicyChange, StoredPolicy
    from workflows import outbox
    from workflows.cloudevents import policy_changed_event
    from workflows.tenant_policy.types import PolicyChangeRequest


# Outside the sandbox, as ConversationWorkflow: deterministic by its code (workflow APIs
# only); the modules of its activities' types load Redis and OpenTelemetry lazily, which the
# sandbox would warn of at every worker start.
@workflow.defn(sandboxed=False)
class PolicyChangeWorkflow:
    def __init__(self) -> None:
        self._stored: StoredPolicy | None = None

    @workflow.run
    async def run(self, request: PolicyChangeRequest) -> StoredPolicy:
        change_id = workflow.info().workflow_id
        stored: StoredPolicy = await workflow.execute_activity(
            "policy.store",
            PolicyChange(request.tenant, request.additions, request.actor, change_id),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
            result_type=StoredPolicy,
        )
        self._stored = stored
        event = [policy_changed_event(request, stored, change_id, workflow.now())]
        while event:  # a broker outage: publish returns after a pause, go again
            await outbox.publish(event)
        return stored

    @workflow.query
    def stored(self) -> StoredPolicy | None:
        """The version stored, once it is (the audit event may still be on its way)."""
        return self._stored
