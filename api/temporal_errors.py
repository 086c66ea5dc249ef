"""Temporal client failures, said in the API's terms (one place, so every route agrees)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from core.errors import (
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    OrchestratorError,
    SessionClosed,
)

_APPLICATION_ERRORS: dict[str, type[OrchestratorError]] = {
    "session_closed": SessionClosed,
    "slm_unavailable": DependencyUnavailable,
    "invalid_request": InvalidRequest,
}


@contextmanager
def temporal_errors(session_id: str) -> Iterator[None]:
    try:
        yield
    except WorkflowAlreadyStartedError:
        # The id is taken by a run that ended (REJECT_DUPLICATE): the session was closed.
        raise SessionClosed(f"Session {session_id} is closed; start a new session.") from None
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        if isinstance(cause, ApplicationError) and cause.type in _APPLICATION_ERRORS:
            raise _APPLICATION_ERRORS[cause.type](cause.message) from None
        raise
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"No session {session_id}.") from None
        if error.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            raise DependencyUnavailable(
                "Temporal is unavailable; retry in a moment.", dependency="temporal"
            ) from None
        raise
