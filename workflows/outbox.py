"""The outbox: events a workflow has recorded, published to Kafka in order, off the reply path.

Workflow code. The list lives in the workflow's state dataclass, so continue-as-new carries
what is not yet published. The workflow's history is the record of intent; a broker outage
only delays publishing, it never fails a turn or loses an event.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.events import PublishRequest

_PUBLISH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)
)
#: After the retries of one publish run out: wait this long, then try the outbox again.
_OUTAGE_PAUSE = timedelta(seconds=10)
#: How long one publish retries before the caller gets control back (a broker outage).
GIVE_UP_SECONDS = 600.0


async def publish(outbox: list[PublishRequest], give_up_seconds: float = GIVE_UP_SECONDS) -> None:
    """Publish `outbox` oldest first, removing each once the broker has it.

    When one event's retries have run for `give_up_seconds` (a long broker outage), keep the
    rest and return after a pause; the caller comes back.
    """
    while outbox:
        try:
            await workflow.execute_activity(
                "events.publish",
                outbox[0],
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(seconds=give_up_seconds),
                retry_policy=_PUBLISH_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("event publishing is failing; will retry")
            await workflow.sleep(_OUTAGE_PAUSE)
            return
        outbox.pop(0)
