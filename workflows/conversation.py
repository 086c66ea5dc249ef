"""ConversationWorkflow: one per session (`conversation:<tenant>:<session_id>`).

A turn arrives as the `step` update (the first one starts the workflow: update-with-start)
and runs as a `Turn` (workflows/turn.py), one at a time in arrival order under a workflow
lock; the session keeps each turn's record, its event and its search attributes. Events go
to an outbox that the main loop publishes in order, so a broker outage never fails or
delays a turn.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.moderation import Verdict
    from workflows import calls, outbox, stream_events
    from workflows.cloudevents import (
        closed_data,
        conversation_event,
        event_id,
        feedback_data,
        turn_data,
    )
    from workflows.search_attributes import (
        LAST_VERDICT,
        POLICY_VERSION,
        TRAINING_MODE,
        TURN_COUNT,
    )
    from workflows.turn import Turn
    from workflows.turns import (
        CancelRequest,
        CloseRequest,
        ConversationState,
        ConversationView,
        Feedback,
        TranscriptRequest,
        TurnRecord,
        TurnRequest,
        TurnResult,
    )

#: What continue-as-new carries: enough to answer the transcript and replays, small enough
#: to stay far below Temporal's payload limits.
CARRIED_TURNS = 100
CARRIED_IDEMPOTENCY_KEYS = 256


class SessionClosed(ApplicationError):
    def __init__(self) -> None:
        super().__init__(
            "This session is closed; start a new one.", type="session_closed", non_retryable=True
        )


# Outside the sandbox: it costs about 6 ms of worker time per workflow task, twice on every
# turn's reply path. Determinism is kept by the code (workflow APIs only, no I/O, no clock)
# and checked by the replay test over committed histories.
@workflow.defn(sandboxed=False)
class ConversationWorkflow:
    @workflow.init
    def __init__(self, state: ConversationState) -> None:
        self.state = state
        self._lock = asyncio.Lock()
        #: The turn in progress, if any.
        self._current: Turn | None = None
        if not state.last_activity:
            state.last_activity = workflow.now().isoformat()

    @workflow.run
    async def run(self, state: ConversationState) -> ConversationView:
        while True:
            try:
                await workflow.wait_condition(
                    lambda: bool(self.state.outbox) or self._ready_to_end_run(),
                    timeout=max(self._idle_left(), timedelta(seconds=1)),
                )
            except TimeoutError:
                if not self._lock.locked() and self._idle_left() <= timedelta(0):
                    await self._close("idle timeout", traceparent="")
                continue
            await outbox.publish(self.state.outbox)
            if not self._ready_to_end_run():
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self.state.status == "closed":
                await outbox.publish(self.state.outbox)
                if not self.state.outbox:
                    return self.view()
            else:
                workflow.continue_as_new(self._carried())

    @workflow.update
    async def step(self, request: TurnRequest) -> TurnResult:
        async with self._lock:
            key = request.idempotency_key
            if key and key in self.state.idempotency:
                earlier = self.state.idempotency[key]
                await stream_events.replay(self.state.turns, request, earlier, self._retention)
                return earlier
            if self.state.status == "closed":
                raise SessionClosed()
            result = await self._turn(request)
            if key:
                self.state.idempotency[key] = result
            return result

    @step.validator
    def _validate_step(self, request: TurnRequest) -> None:
        replay = request.idempotency_key in self.state.idempotency
        if self.state.status == "closed" and not replay:
            raise SessionClosed()
        if not request.message.strip():
            raise ApplicationError("The message is empty.", type="invalid_request")

    @workflow.update
    async def close(self, request: CloseRequest) -> ConversationView:
        async with self._lock:  # after the turn in progress, never in the middle of it
            if self.state.status != "closed":
                await self._close(request.reason, request.traceparent)
        return self.view()

    @workflow.update
    async def cancel(self, request: CancelRequest) -> TurnRecord:
        """Stop the running turn, its SLM call too; answers once the turn ended `cancelled`."""
        if self._current is not None:
            self._current.cancel()
        await workflow.wait_condition(lambda: self._running != request.turn)
        # `cancelled`, or how it ended if it ended first.
        ended = next((t for t in reversed(self.state.turns) if t.turn == request.turn), None)
        if ended is None:
            raise ApplicationError(
                f"Turn {request.turn} ended without a record.",
                type="turn_not_running",
                non_retryable=True,
            )
        return ended

    @property
    def _running(self) -> int:
        return self._current.number if self._current is not None else 0

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if self._current is not None and request.turn == self._current.number:
            if not self._current.cancel_asked:
                return
            raise ApplicationError(
                f"Turn {request.turn} is not running: it is being cancelled.",
                type="turn_not_running",
                non_retryable=True,
            )
        if 1 <= request.turn <= self.state.turn_count:
            raise ApplicationError(
                f"Turn {request.turn} is not running: it already ended.",
                type="turn_not_running",
                non_retryable=True,
            )
        raise ApplicationError(
            f"This session has no turn {request.turn}.", type="not_found", non_retryable=True
        )

    @workflow.signal
    def feedback(self, feedback: Feedback) -> None:
        if not 1 <= feedback.turn <= self.state.turn_count or self.state.policy is None:
            workflow.logger.warning("feedback for unknown turn %s ignored", feedback.turn)
            return
        self.state.feedback_count += 1
        for record in self.state.turns:
            if record.turn == feedback.turn:
                record.feedback.append(feedback)
        self._emit(
            "conversation.feedback",
            event_id(workflow.info().workflow_id, "feedback", self.state.feedback_count),
            feedback.traceparent,
            feedback_data(self.state.settings.session_id, feedback),
            self.state.policy,
        )

    @workflow.query
    def transcript(self, request: TranscriptRequest) -> ConversationView:
        """The session and at most `request.limit` of its latest turns before `before_turn`."""
        older = [
            t for t in self.state.turns if not request.before_turn or t.turn < request.before_turn
        ]
        page = older[len(older) - request.limit :] if request.limit else []
        info = workflow.info()
        return ConversationView(
            session_id=self.state.settings.session_id,
            status=self.state.status,
            turns=page,
            training_mode=bool(self.state.turns) and self.state.turns[-1].training_mode,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            turn_count=self.state.turn_count,
            earlier_turns=self.state.earlier_turns,
            next_before=page[0].turn if page and len(older) > len(page) else None,
        )

    @workflow.query
    def view(self) -> ConversationView:
        """The latest page of the transcript (also the run's result and close's answer)."""
        return self.transcript(TranscriptRequest())

    async def _turn(self, request: TurnRequest) -> TurnResult:
        self.state.turn_count += 1
        self._current = Turn(self.state, request, self.state.turn_count, self._record)
        self._touch()
        try:
            return await self._current.run()
        finally:
            self._current = None

    async def _moderate(self, text: str, stage: str) -> Verdict:
        verdict = await calls.moderate(text, stage)
        self.state.policy = verdict
        return verdict

    def _record(self, record: TurnRecord) -> None:
        self.state.turns.append(record)
        workflow.upsert_search_attributes(
            [
                TURN_COUNT.value_set(record.turn),
                LAST_VERDICT.value_set(record.verdict.decision),
                POLICY_VERSION.value_set(record.verdict.policy_version),
                TRAINING_MODE.value_set(record.training_mode),
            ]
        )
        self._emit(
            f"conversation.turn.{record.status}",
            event_id(workflow.info().workflow_id, "turn", record.turn),
            record.traceparent,
            turn_data(self.state.settings.session_id, record),
            record.verdict,
            decision=record.verdict.decision,
        )
        self._touch()

    async def _close(self, reason: str, traceparent: str) -> None:
        self.state.status = "closed"
        policy = self.state.policy or await self._moderate("", "input")
        self._emit(
            "conversation.closed",
            event_id(workflow.info().workflow_id, "closed", 1),
            traceparent,
            closed_data(self.state.settings.session_id, reason, self.state.turn_count),
            policy,
        )

    def _emit(
        self,
        kind: str,
        identifier: str,
        traceparent: str,
        data: dict[str, object],
        policy: Verdict,
        decision: str | None = None,
    ) -> None:
        settings = self.state.settings
        self.state.outbox.append(
            conversation_event(
                topic=settings.events_topic,
                tenant=settings.tenant,
                session_id=settings.session_id,
                event_type=kind,
                event_id=identifier,
                time=workflow.now(),
                traceparent=traceparent,
                data=data,
                policy=policy,
                decision=decision,
            )
        )

    def _ready_to_end_run(self) -> bool:
        """Closed or due for continue-as-new, and no turn in progress (never end one midway)."""
        return self._should_end_run() and not self._lock.locked()

    def _should_end_run(self) -> bool:
        per_run = self.state.settings.turns_per_run
        turns_this_run = self.state.turn_count - self.state.run_started_at_turn
        return (
            self.state.status == "closed"
            or workflow.info().is_continue_as_new_suggested()
            or (per_run > 0 and turns_this_run >= per_run)
        )

    def _carried(self) -> ConversationState:
        state = self.state
        dropped = max(0, len(state.turns) - CARRIED_TURNS)
        state.earlier_turns += dropped
        state.turns = state.turns[dropped:]
        keys = list(state.idempotency)[-CARRIED_IDEMPOTENCY_KEYS:]
        state.idempotency = {key: state.idempotency[key] for key in keys}
        state.run_started_at_turn = state.turn_count
        return state

    @property
    def _retention(self) -> int:
        return self.state.settings.stream_retention_seconds

    def _touch(self) -> None:
        self.state.last_activity = workflow.now().isoformat()

    def _idle_left(self) -> timedelta:
        idle = timedelta(seconds=self.state.settings.idle_timeout_seconds)
        return idle - (workflow.now() - datetime.fromisoformat(self.state.last_activity))
