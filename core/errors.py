"""The domain error root: each error knows its HTTP status and its problem `type` code.

The API turns any of these into `application/problem+json` in one handler; nothing else
needs to know about HTTP.
"""

from __future__ import annotations

from typing import Any

#: Every problem's `type` is this prefix and its `code` (RFC 9457 allows a URN).
PROBLEM_TYPE_PREFIX = "urn:orchestrator:problem:"


class OrchestratorError(Exception):
    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def problem(self, trace_id: str) -> dict[str, Any]:
        """This error as a problem document, e.g. for a stream's `error` event."""
        return problem_body(
            self.status, self.code, self.title, self.detail, trace_id, **self.extensions
        )


def problem_body(
    status: int, code: str, title: str, detail: str, trace_id: str, **extensions: Any
) -> dict[str, Any]:
    """An RFC 9457 problem document, with the `code` and `trace_id` every answer carries."""
    return {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "trace_id": trace_id,
        **extensions,
    }


class BadRequest(OrchestratorError):
    status, code, title = 400, "bad_request", "Malformed request"


class Unauthenticated(OrchestratorError):
    status, code, title = 401, "unauthenticated", "Authentication required"


class Forbidden(OrchestratorError):
    status, code, title = 403, "forbidden", "Not allowed"


class NotFound(OrchestratorError):
    status, code, title = 404, "not_found", "Not found"


class ModelNotFound(NotFound):
    code, title = "model_not_found", "No such model"


class InvalidParameter(OrchestratorError):
    """A field of an OpenAI-style request this API cannot take: `param` names it, and the
    error's code says why (`unknown_parameter`, `unsupported_parameter`, ...)."""

    status, code, title = 400, "invalid_value", "Invalid parameter"

    def __init__(self, detail: str, param: str | None, code: str = "invalid_value") -> None:
        super().__init__(detail, param=param)
        self.code = code


class PayloadTooLarge(OrchestratorError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class DependencyUnavailable(OrchestratorError):
    status, code, title = 503, "dependency_unavailable", "A dependency is unavailable"


class InvalidRequest(OrchestratorError):
    status, code, title = 422, "validation_error", "Invalid request"


class PolicyLoosens(InvalidRequest):
    """A tenant policy that would refuse less than the operator's: `loosens` says where."""

    code, title = "policy_loosens", "Policy looser than the operator's"


class SlmRejected(InvalidRequest):
    code, title = "slm_rejected", "The language model refused the request"


class IdempotencyMismatch(InvalidRequest):
    code, title = "idempotency_mismatch", "Idempotency-Key used for another request"


class EventsBacklog(DependencyUnavailable):
    """A session whose unpublished events (a broker outage) reached their bound."""

    code, title = "events_backlog", "Events waiting for the broker"

    def __init__(self, detail: str, **extensions: object) -> None:
        super().__init__(detail, dependency="kafka", **extensions)


class SessionClosed(OrchestratorError):
    status, code, title = 409, "session_closed", "Session closed"


class HistoryMismatch(OrchestratorError):
    """The earlier messages of an OpenAI-style request are not the session's."""

    status, code, title = 409, "history_mismatch", "Conversation mismatch"


class TurnNotRunning(OrchestratorError):
    status, code, title = 409, "turn_not_running", "Turn already ended"


class TurnInProgress(OrchestratorError):
    status, code, title = 409, "turn_in_progress", "Another turn is running"


class TurnCancelled(OrchestratorError):
    status, code, title = 409, "turn_cancelled", "Turn cancelled"


class TurnTimedOut(OrchestratorError):
    status, code, title = 504, "turn_timeout", "Turn took too long"


class TrainingLocked(OrchestratorError):
    status, code, title = 409, "training_locked", "Training mode held by another admin"


class PolicyMismatch(OrchestratorError):
    status, code, title = 409, "policy_mismatch", "Policy mismatch"


class RateLimited(OrchestratorError):
    """Over one of the tenant's limits; `retry_after_seconds` says when to try again."""

    status, code, title = 429, "rate_limited", "Too many requests"


class QuotaExceeded(RateLimited):
    """Over a quota of the window; `retry_after_seconds` is the time to the window's end."""

    code, title = "quota_exceeded", "Quota used up"
