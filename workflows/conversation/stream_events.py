"""The events of a streamed turn (docs/interface.md, section 4), as the workflow writes them.

The SLM activity writes the opening (`turn.accepted`, `verdict`) and the `token`s; the
workflow writes how the turn ended (and the opening, if the SLM call never started it).
The step response body is built here once, for the `turn.completed` event and for the
API's answer alike.

Workflow code: `TurnStream` and `replay` are used by a turn (workflows/conversation/turn.py) and by
the
conversation workflow.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.redis_stream import AppendRequest, StreamEvent, StreamTarget
    from core.errors import DependencyUnavailable
    from core.moderation.verdict import Verdict, public_verdict
    from workflows.conversation import calls
    from workflows.conversation.types import TurnRecord, TurnRequest, TurnResult


def step_body(result: TurnResult) -> dict[str, Any]:
    """The body of a step response (docs/interface.md, section 4), with why the SLM stopped
    (`stop`, `length`) for a completed turn."""
    body = record_body(result, result.session_id, result.workflow_id, result.run_id)
    return {**body, "finish_reason": result.finish_reason or None}


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


def opening(
    session_id: str, turn: int, trace_id: str, verdict: Verdict | None
) -> list[StreamEvent]:
    """`turn.accepted`, then the input `verdict` (added by the SLM activity when None)."""
    accepted = [
        StreamEvent("turn.accepted", {"session_id": session_id, "turn": turn, "trace_id": trace_id})
    ]
    if verdict is None:
        return accepted
    return [*accepted, StreamEvent("verdict", public_verdict(verdict))]


def closing(result: TurnResult) -> list[StreamEvent]:
    """How the turn ended, after its opening."""
    body = step_body(result)
    if result.status == "completed":
        return [StreamEvent("turn.completed", body)]
    if result.verdict.stage == "input":
        return [StreamEvent("turn.refused", body)]
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


class TurnStream:
    """The stream of one streamed turn, as its workflow writes it.

    The opening (`turn.accepted`) is handed to the SLM activity, which adds the input
    `verdict` and writes both once its input check allowed the turn, before its first token;
    `end` hands the opening (with the verdict, known by then) over again, and it is written
    only into an empty stream: so a turn that ends before any SLM call wrote (refused at
    input, cancelled, failed) still opens its stream, and no stream is opened twice. The id
    of the turn's last event is kept with its record, so the resume route can replay it
    once the stream expired.
    """

    def __init__(self, target: StreamTarget, turns: list[TurnRecord]) -> None:
        self.target = target
        self._turns = turns
        self.opening: list[StreamEvent] = []

    @classmethod
    def of(
        cls, request: TurnRequest, turn: int, retention_seconds: int, turns: list[TurnRecord]
    ) -> TurnStream | None:
        """Where a streamed turn's events go; None for a turn that is not streamed."""
        if not request.stream_id:
            return None
        target = StreamTarget(
            workflow_id=workflow.info().workflow_id,
            stream_id=request.stream_id,
            turn=turn,
            retention_seconds=retention_seconds,
        )
        return cls(target, turns)

    def open(self, session_id: str, trace_id: str, verdict: Verdict | None) -> None:
        self.opening = opening(session_id, self.target.turn, trace_id, verdict)

    async def end(self, events: list[StreamEvent]) -> None:
        """The turn's last events, after the opening if nothing wrote it yet."""
        try:
            ids = await calls.append_stream(AppendRequest(self.target, events, self.opening))
        except ActivityError:
            workflow.logger.warning("could not write the end of turn %s's stream", self.target.turn)
            return
        for record in reversed(self._turns):
            if record.turn == self.target.turn and ids:
                record.stream_id, record.stream_final_id = self.target.stream_id, ids[-1]
                break


async def replay(
    turns: list[TurnRecord], request: TurnRequest, earlier: TurnResult, retention_seconds: int
) -> None:
    """A repeated Idempotency-Key on the stream route: the first result, as a new stream."""
    stream = TurnStream.of(request, earlier.turn, retention_seconds, turns)
    if stream is not None:
        # Results kept before turns recorded their checks have only the final verdict.
        first_check = earlier.checks[0] if earlier.checks else earlier.verdict
        stream.open(earlier.session_id, earlier.trace_id, first_check)
        await stream.end(closing(earlier)[-1:])
