"""The events of a streamed turn (CONTRACT section 4), as the workflow writes them.

The SLM activity writes the opening (`turn.accepted`, `verdict`) and the `token`s; the
workflow writes how the turn ended (and the opening, if the SLM call never started it).
The step response body is built here once, for the `turn.completed` event and for the
API's answer alike.

Workflow code: `target`, `write` and `replay` are called from the conversation workflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.moderation import Verdict
    from activities.turn_stream import AppendRequest, StreamEvent, StreamTarget
    from core.errors import DependencyUnavailable
    from workflows import calls
    from workflows.cloudevents import public_verdict
    from workflows.turns import TurnRecord, TurnRequest, TurnResult


def step_body(result: TurnResult) -> dict[str, Any]:
    """The body of a step response (CONTRACT section 4)."""
    return record_body(result, result.session_id, result.workflow_id, result.run_id)


def record_body(
    turn: TurnResult | TurnRecord, session_id: str, workflow_id: str, run_id: str
) -> dict[str, Any]:
    """The same body from the record of a turn that has ended."""
    return {
        "session_id": session_id,
        "turn": turn.turn,
        "status": turn.status,
        "reply": turn.reply,
        "verdict": public_verdict(turn.verdict),
        "usage": {
            "prompt_tokens": turn.usage.prompt_tokens,
            "completion_tokens": turn.usage.completion_tokens,
        },
        "training_mode": turn.training_mode,
        "trace_id": turn.trace_id,
        "workflow_id": workflow_id,
        "run_id": run_id,
    }


def opening(session_id: str, turn: int, trace_id: str, verdict: Verdict) -> list[StreamEvent]:
    accepted = {"session_id": session_id, "turn": turn, "trace_id": trace_id}
    return [StreamEvent("turn.accepted", accepted), StreamEvent("verdict", public_verdict(verdict))]


def closing(result: TurnResult, opened: list[StreamEvent]) -> list[StreamEvent]:
    """How the turn ended. `opened`: the opening, if the SLM activity never wrote it."""
    body = step_body(result)
    if result.status == "completed":
        return [StreamEvent("turn.completed", body)]
    if result.verdict.stage == "input":
        return [*opened, StreamEvent("turn.refused", body)]
    # The tokens sent so far were refused: the reader drops them, then learns why.
    return [StreamEvent("retract", {"reason": "moderation"}), StreamEvent("turn.refused", body)]


SLM_FAILED = "The language model did not answer; the turn failed. Retry in a moment."


def slm_failed(trace_id: str) -> StreamEvent:
    """The `error` event of a turn whose SLM call failed: the step route's 503 problem."""
    return StreamEvent("error", DependencyUnavailable(SLM_FAILED).problem(trace_id))


def time_limit_detail(limit_seconds: float) -> str:
    """Why a turn stopped at the session's time limit (the step route's 504, its event)."""
    return (
        f"The turn ran longer than its limit of {limit_seconds:g} s and was stopped. "
        "Retry, or ask for a shorter reply."
    )


def target(request: TurnRequest, turn: int, retention_seconds: int) -> StreamTarget | None:
    """Where a streamed turn's events go; None for a turn that is not streamed."""
    if not request.stream_id:
        return None
    return StreamTarget(
        workflow_id=workflow.info().workflow_id,
        stream_id=request.stream_id,
        turn=turn,
        retention_seconds=retention_seconds,
    )


async def write(
    turns: list[TurnRecord],
    stream: StreamTarget,
    events: list[StreamEvent],
    opening: Sequence[StreamEvent] = (),
) -> None:
    """The turn's ending, in its stream; the id of its last event is kept with its record in
    `turns`. `opening`: written first if the stream is still empty (no SLM call started it)."""
    try:
        ids = await calls.append_stream(AppendRequest(stream, events, list(opening)))
    except ActivityError:
        workflow.logger.warning("could not write the end of turn %s's stream", stream.turn)
        return
    for record in reversed(turns):
        if record.turn == stream.turn and ids:
            record.stream_id, record.stream_final_id = stream.stream_id, ids[-1]
            break


async def replay(
    turns: list[TurnRecord], request: TurnRequest, earlier: TurnResult, retention_seconds: int
) -> None:
    """A repeated Idempotency-Key on the stream route: the first result, as a new stream."""
    stream = target(request, earlier.turn, retention_seconds)
    if stream is not None:
        # Results kept before turns recorded their checks have only the final verdict.
        first_check = earlier.checks[0] if earlier.checks else earlier.verdict
        opened = opening(earlier.session_id, earlier.turn, earlier.trace_id, first_check)
        await write(turns, stream, closing(earlier, [])[-1:], opened)
