"""Where a turn's time goes, read from its workflow history.

Event times come from the Temporal server's clock and the request's send and receive times
from this process's wall clock; both run on the same machine. The phases of the first turn
of a session, in order:

- to_first_task: sending the request until the first workflow task starts (API, update-with-start)
- first_task: that task (update, input check) until the SLM activity is scheduled
- slm_dispatch: scheduled until a worker on the SLM queue starts it
- slm_activity_extra: the activity's time that is not its SLM call
- to_second_task: the activity's completion until the next workflow task starts
- second_task: that task (record, events outbox, search attributes) until it completes
- reply: its completion until the client has the reply
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

PHASES = (
    "to_first_task",
    "first_task",
    "slm_dispatch",
    "slm_activity_extra",
    "to_second_task",
    "second_task",
    "reply",
)


@dataclass(frozen=True)
class TurnTrace:
    workflow_id: str
    run_id: str | None  # None: the workflow's latest run
    sent: float  # time.time() when the request was sent
    received: float  # and when its reply was read
    slm_seconds: float


async def phases(temporal: Client, trace: TurnTrace) -> dict[str, float]:
    """The phases of a session's first turn (or of a floor request), in ms."""
    handle = temporal.get_workflow_handle(trace.workflow_id, run_id=trace.run_id)
    history = await handle.fetch_history()
    events = [
        (event.event_type, event.event_time.ToDatetime(tzinfo=UTC).timestamp())
        for event in history.events
    ]

    position = 0

    def next_time(kind: int) -> float:
        """The time of the next `kind` event after the one found last."""
        nonlocal position
        position = next(i for i in range(position, len(events)) if events[i][0] == kind)
        return events[position][1]

    task_started = next_time(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    scheduled = next_time(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    started = next_time(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    completed = next_time(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    second_started = next_time(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    second_completed = next_time(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    seconds = {
        "to_first_task": task_started - trace.sent,
        "first_task": scheduled - task_started,
        "slm_dispatch": started - scheduled,
        "slm_activity_extra": completed - started - trace.slm_seconds,
        "to_second_task": second_started - completed,
        "second_task": second_completed - second_started,
        "reply": trace.received - second_completed,
    }
    return {name: seconds[name] * 1000 for name in PHASES}
