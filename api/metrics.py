"""The API's Prometheus metrics (CONTRACT section 8), defined once per process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "orchestrator_requests_total",
    "HTTP requests by route template and decision.",
    ["route", "decision"],
)
REQUEST_DURATION = Histogram(
    "orchestrator_request_duration_seconds",
    "HTTP request duration by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def decision_for(status: int) -> str:
    """The default decision label; a route that knows better sets `request.state.decision`."""
    if status < 400:
        return "allowed"
    if status in (401, 403):
        return "unauthorized"
    if status < 500:
        return "rejected"
    return "error"


TURN_DURATION = Histogram(
    "orchestrator_turn_duration_seconds",
    "Turn duration by stage: input_moderation, slm, output_moderation, and total (as the API saw it).",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
MODERATION_VERDICTS = Counter(
    "orchestrator_moderation_verdicts_total",
    "Moderation checks by stage, category (none when allowed) and decision.",
    ["stage", "category", "decision"],
)
