"""ConversationWorkflow: one per session (`conversation:<tenant>:<session_id>`).

A turn arrives as the `step` update (the first one starts the workflow: update-with-start).
Turns run one at a time in arrival order under a workflow lock. Events go to an outbox
that the main loop publishes in order, so a broker outage never fails or delays a turn.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState

with workflow.unsafe.imports_passed_through():
    from activities.moderation import Verdict
    from activities.slm import Completion, CompletionRequest
    from activities.training_lock import Lease
    from activities.turn_stream import StreamEvent, StreamTarget
    from core.errors import DependencyUnavailable, OrchestratorError, TurnTimedOut
    from workflows import calls, lease_calls, outbox, stream_events
    from workflows.cloudevents import (
        closed_data,
        conversation_event,
        event_id,
        feedback_data,
        turn_data,
    )
    from workflows.context import recent_context
    from workflows.search_attributes import (
        LAST_VERDICT,
        POLICY_VERSION,
        TRAINING_MODE,
        TURN_COUNT,
    )
    from workflows.timestamps import iso
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
        Usage,
    )

#: workflow.patched id: the SLM activity returns the output verdict with the reply.
OUTPUT_CHECKED_BY_SLM = "output-checked-by-slm"
#: workflow.patched id: each turn reads the tenant's training lease beside the input check.
TRAINING_LEASE_READ = "training-lease-read"

#: What continue-as-new carries: enough to answer the transcript and replays, small enough
#: to stay far below Temporal's payload limits.
CARRIED_TURNS = 100
CARRIED_IDEMPOTENCY_KEYS = 256


class TurnCancelled(Exception):
    """The running turn was cancelled (by the `cancel` update); it ends `cancelled`."""


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
        #: The turn in progress (0: none), its SLM call, and whether its cancel was asked.
        self._running = 0
        self._slm_call: workflow.ActivityHandle[Completion] | None = None
        self._cancel_asked = False
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
        self._cancel_asked = True
        if self._slm_call is not None:
            self._slm_call.cancel()
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

    @cancel.validator
    def _validate_cancel(self, request: CancelRequest) -> None:
        if request.turn == self._running and not self._cancel_asked:
            return
        if request.turn == self._running or 1 <= request.turn <= self.state.turn_count:
            state = "is being cancelled" if request.turn == self._running else "already ended"
            raise ApplicationError(
                f"Turn {request.turn} is not running: it {state}.",
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
        number = self._running = self.state.turn_count
        try:
            return await self._run_turn(request, number)
        finally:
            self._running, self._slm_call, self._cancel_asked = 0, None, False

    async def _run_turn(self, request: TurnRequest, number: int) -> TurnResult:
        started = workflow.now()
        self._touch()
        first_check, lease = await self._admit(request.message)
        stream = stream_events.target(request, number, self._retention)
        opened = stream_events.opening(
            self.state.settings.session_id, number, request.trace_id, first_check
        )
        checks = [first_check]
        usage, timings = Usage(), {"input_moderation": first_check.duration_seconds}
        if first_check.decision == "refuse":
            status, reply = "refused", first_check.message
        else:
            try:
                completion = await self._complete(request, number, started, lease, stream, opened)
            except TurnCancelled:
                await self._cancelled(request, number, started, first_check, lease, stream, opened)
                raise ApplicationError(
                    f"Turn {number} was cancelled.", type="turn_cancelled", non_retryable=True
                ) from None
            opened = []  # the SLM activity wrote the opening
            usage = Usage(completion.prompt_tokens, completion.completion_tokens)
            timings["slm"] = completion.duration_seconds
            checks.append(await self._output_verdict(completion))
            timings["output_moderation"] = checks[-1].duration_seconds
            refused = checks[-1].decision == "refuse"
            status, reply = (
                ("refused", checks[-1].message) if refused else ("completed", completion.text)
            )
        verdict = checks[-1]
        self._record(_ended(request, number, started, status, reply, verdict, usage, lease))
        info = workflow.info()
        result = TurnResult(
            session_id=self.state.settings.session_id,
            turn=number,
            status=status,
            reply=reply,
            verdict=verdict,
            usage=usage,
            training_mode=lease is not None,
            trace_id=request.trace_id,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            checks=checks,
            timings=timings,
        )
        if stream is not None:
            await stream_events.write(
                self.state.turns, stream, stream_events.closing(result, opened)
            )
        return result

    async def _admit(self, message: str) -> tuple[Verdict, Lease | None]:
        """The input check and, beside it in the same workflow task, the training lease."""
        if not workflow.patched(TRAINING_LEASE_READ):
            return await self._moderate(message, "input"), None
        return await asyncio.gather(self._moderate(message, "input"), self._training_lease())

    async def _training_lease(self) -> Lease | None:
        try:
            return (await lease_calls.read(self.state.settings.tenant)).lease
        except ActivityError:
            # Unknown counts as off: a turn is only ever marked under a lease that was seen.
            workflow.logger.warning("training lock unreadable; the turn is not marked")
            return None

    async def _complete(
        self,
        request: TurnRequest,
        number: int,
        started: datetime,
        lease: Lease | None,
        stream: StreamTarget | None,
        opening: list[StreamEvent],
    ) -> Completion:
        policy = self.state.policy
        assert policy is not None  # set by the input check
        settings = self.state.settings
        if self._cancel_asked:
            raise TurnCancelled()
        # The SLM call gets what is left of the turn's time, its retries included: a turn
        # stuck there (no SLM worker, a server that never answers) ends `failed` at the limit.
        limit = timedelta(seconds=settings.max_turn_seconds)
        time_left = max(limit - (workflow.now() - started), timedelta(seconds=1))
        self._slm_call = calls.start_completion(
            CompletionRequest(
                messages=recent_context(
                    self.state.turns, request.message, settings.context_token_budget
                ),
                max_tokens=settings.max_reply_tokens,
                headers={
                    "X-Policy-Version": policy.policy_version,
                    "X-Constitution-Hash": policy.constitution_hash,
                },
                stream=stream,
                opening=opening,
            ),
            settings.slm_task_queue,
            time_left,
        )
        try:
            return await self._slm_call
        except ActivityError as error:
            if isinstance(error.cause, CancelledError) and self._cancel_asked:
                raise TurnCancelled() from None
            failure: OrchestratorError
            if error.retry_state == RetryState.TIMEOUT:  # out of time, retries included
                failure = TurnTimedOut(stream_events.time_limit_detail(limit.total_seconds()))
                kind = "turn_timeout"
            else:
                failure, kind = DependencyUnavailable(stream_events.SLM_FAILED), "slm_unavailable"
            record = _ended(request, number, started, "failed", "", policy, Usage(), lease)
            record.problem = failure.problem(request.trace_id)
            self._record(record)
            if stream is not None:
                error_event = StreamEvent("error", record.problem)
                await stream_events.write(self.state.turns, stream, [error_event], opening)
            raise ApplicationError(failure.detail, type=kind, non_retryable=True) from error

    async def _cancelled(
        self,
        request: TurnRequest,
        number: int,
        started: datetime,
        verdict: Verdict,
        lease: Lease | None,
        stream: StreamTarget | None,
        opening: list[StreamEvent],
    ) -> None:
        record = _ended(request, number, started, "cancelled", "", verdict, Usage(), lease)
        self._record(record)
        if stream is not None:
            info = workflow.info()
            body = stream_events.record_body(
                record, self.state.settings.session_id, info.workflow_id, info.run_id
            )
            cancelled = [StreamEvent("turn.cancelled", body)]
            await stream_events.write(self.state.turns, stream, cancelled, opening)

    async def _output_verdict(self, completion: Completion) -> Verdict:
        # Histories from before the SLM activity checked its own output ran a second local
        # activity here; they still replay. So does a reply from a worker without the check.
        if workflow.patched(OUTPUT_CHECKED_BY_SLM) and completion.verdict is not None:
            self.state.policy = completion.verdict
            return completion.verdict
        return await self._moderate(completion.text, "output")

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


def _ended(
    request: TurnRequest,
    number: int,
    started: datetime,
    status: str,
    reply: str,
    verdict: Verdict,
    usage: Usage,
    lease: Lease | None,
) -> TurnRecord:
    """The record of a turn that ended now, marked if it ran under a training lease."""
    return TurnRecord(
        turn=number,
        message=request.message,
        reply=reply,
        status=status,
        verdict=verdict,
        trace_id=request.trace_id,
        started_at=iso(started),
        completed_at=iso(workflow.now()),
        usage=usage,
        training_mode=lease is not None,
        training_fence=lease.fence if lease else None,
        metadata=request.metadata,
        traceparent=request.traceparent,
    )
