"""Temporal client failures, said in the API's terms (one place, so every route agrees)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.errors import (
    DependencyUnavailable,
    EventsBacklog,
    Forbidden,
    HistoryMismatch,
    IdempotencyMismatch,
    InvalidRequest,
    NotFound,
    OrchestratorError,
    SessionClosed,
    SlmRejected,
    TrainingLocked,
    TurnCancelled,
    TurnInProgress,
    TurnNotRunning,
    TurnTimedOut,
)

_APPLICATION_ERRORS: dict[str, type[OrchestratorError]] = {
    "session_closed": SessionClosed,
    "slm_unavailable": DependencyUnavailable,
    "lock_store_unavailable": DependencyUnavailable,
    "invalid_request": InvalidRequest,
    "training_locked": TrainingLocked,
    "turn_not_running": TurnNotRunning,
    "turn_cancelled": TurnCancelled,
    "turn_in_progress": TurnInProgress,
    "turn_timeout": TurnTimedOut,
    "not_found": NotFound,
    "forbidden": Forbidden,
    "idempotency_mismatch": IdempotencyMismatch,
    "events_backlog": EventsBacklog,
    "slm_rejected": SlmRejected,
    "history_mismatch": HistoryMismatch,
}


@contextmanager
def temporal_errors(what: str) -> Iterator[None]:
    """`what` names the workflow for a user, e.g. "session s1"."""
    try:
        yield
    except WorkflowAlreadyStartedError:
        # The id is taken by a run that ended (REJECT_DUPLICATE): the session was closed.
        raise SessionClosed(
            f"{what[:1].upper()}{what[1:]} is closed; start a new session."
        ) from None
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError) and cause.type in _APPLICATION_ERRORS:
            # A dict in the error's details becomes the problem's extension members.
            details = cause.details[0] if cause.details else {}
            extensions = details if isinstance(details, dict) else {}
            if cause.type == "not_found":  # said as for a workflow that does not exist
                raise NotFound(f"No {what}.") from None
            raise _APPLICATION_ERRORS[cause.type](cause.message, **extensions) from None
        raise
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"No {what}.") from None
        if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise DependencyUnavailable(
                "Temporal is unavailable; retry in a moment.", dependency="temporal"
            ) from None
        if error.status == RPCStatusCode.RESOURCE_EXHAUSTED:  # its rate or its capacity
            raise DependencyUnavailable(
                "Temporal is over its capacity; retry in a moment.", dependency="temporal"
            ) from None
        raise
