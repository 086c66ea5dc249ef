"""ConversationWorkflow: one per session (`conversation:<tenant>:<session_id>`).

A turn arrives as the `step` update (the first one starts the workflow: update-with-start),
is admitted here (its owner, its Idempotency-Key, the events backlog), and runs as a `Turn`
(workflows/conversation/turn.py), one at a time in arrival order under a workflow lock; the turn
hands
its record to the session's `SessionRecord` (workflows/conversation/session_record.py), which keeps
it
and fills the outbox. The main loop publishes the outbox in order, so a broker outage never
fails or delays a turn.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows import outbox
    from workflows.conversation import calls, stream_events
    from workflows.conversation.history import agrees, takes_seed
    from workflows.conversation.session_record import (
        BACKLOG_ADMIT_BYTES,
        OUTBOX_CARRY_BYTES,
        SessionRecord,
    )
    from workflows.conversation.sizes import KIB
    from workflows.conversation.turn import Turn
    from workflows.conversation.types import (
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
    from workflows.patches import END_RUN_AFTER_TURN_IN_FLIGHT, OUTBOX_CARRIED_WITHIN_BOUND


class SessionClosed(ApplicationError):
    def __init__(self) -> None:
        super().__init__(
            "This session is closed; start a new one.", type="session_closed", non_retryable=True
        )


def _refused(message: str, kind: str) -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


# Outside the sandbox: it costs about 6 ms of worker time per workflow task, twice on every
# turn's reply path. Determinism is kept by the code (workflow APIs only, no I/O, no clock)
# and checked by the replay test over committed histories.
@workflow.defn(sandboxed=False)
class ConversationWorkflow:
    @workflow.init
    def __init__(self, state: ConversationState) -> None:
        self.state = state
        self._session = SessionRecord(state)
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
                    await self._close("idle timeout", "system", traceparent="")
                continue
            await self._publish()
            if not self._should_end_run():
                continue
            # A turn that came in while the outbox was published: wait for it, then end the
            # run. Going round again instead let a client that sends turns back to back keep
            # one run forever, its history growing without bound.
            if self._lock.locked() and not workflow.patched(END_RUN_AFTER_TURN_IN_FLIGHT.id):
                continue
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self.state.status == "closed":
                await self._publish()
                if not self.state.outbox:
                    return self.view()
            elif self._outbox_fits_next_run():
                workflow.continue_as_new(self._session.carried())

    @workflow.update
    async def step(self, request: TurnRequest) -> TurnResult:
        key = request.idempotency_key
        replayed = bool(key) and key in self.state.idempotency
        running = self._current
        if request.on_busy == "interrupt" and not replayed and running and not running.cancel_asked:
            running.cancel()  # it ends `cancelled`; turns queued before this one run first
        async with self._lock:
            if key and key in self.state.idempotency:
                earlier = self.state.idempotency[key]
                self._check_same_request(request, earlier)  # two racing retries: the second
                await stream_events.replay(self.state.turns, request, earlier, self._retention)
                return earlier
            if self.state.status == "closed":
                raise SessionClosed()
            self._check_history(request)  # again: a turn may have ended since the validator
            result = await self._turn(request)
            if key:
                result.fingerprint = request.fingerprint
                self.state.idempotency[key] = result
            return result

    @step.validator
    def _validate_step(self, request: TurnRequest) -> None:
        """Refused here, a turn leaves nothing in the history."""
        owner = self.state.settings.owner
        if owner and request.actor != owner and not request.actor_is_admin:
            # To another user of the tenant the session does not exist (the API says so as
            # for any missing session): an id tells nobody whose it is.
            raise _refused("No such session.", "not_found")
        earlier = self.state.idempotency.get(request.idempotency_key or "")
        if earlier is not None:
            self._check_same_request(request, earlier)
            return  # the first result again, closed session or not
        if self.state.status == "closed":
            raise SessionClosed()
        if not request.message.strip():
            raise ApplicationError("The message is empty.", type="invalid_request")
        if request.on_busy == "reject" and self._lock.locked():
            raise _refused(
                f"Turn {self._running or self.state.turn_count} of this session is still "
                "running; send the message once it ended, or with on_busy `enqueue` (wait "
                "for it) or `interrupt` (cancel it).",
                "turn_in_progress",
            )
        self._check_history(request)
        backlog = self._session.backlog_bytes()
        if backlog > BACKLOG_ADMIT_BYTES:
            raise _refused(
                f"This session's events ({backlog // KIB} KiB) are waiting for the event "
                "broker; it takes new turns again once they are published. Retry later.",
                "events_backlog",
            )

    @staticmethod
    def _check_same_request(request: TurnRequest, earlier: TurnResult) -> None:
        if earlier.fingerprint and request.fingerprint != earlier.fingerprint:
            raise _refused(
                "This Idempotency-Key was used for a different request in this session; "
                "use a new key for a new message.",
                "idempotency_mismatch",
            )

    def _check_history(self, request: TurnRequest) -> None:
        """The conversation the client holds must be this session's
        (workflows/conversation/history.py),
        unless the turn seeds a session that has none yet."""
        if not request.history or (request.seed and takes_seed(self.state)):
            return
        if not agrees(request.history, self.state):
            raise _refused(
                "The earlier messages of the request are not this session's latest messages "
                "(its transcript shows them): send them as the session has them, or use a "
                "new session.",
                "history_mismatch",
            )

    @workflow.update
    async def close(self, request: CloseRequest) -> ConversationView:
        async with self._lock:  # after the turn in progress, never in the middle of it
            if self.state.status != "closed":
                await self._close(request.reason, request.actor, request.traceparent)
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
        """How feedback came before it was an update (kept for histories that hold it)."""
        self._session.feedback_given(feedback)

    @workflow.update
    def give_feedback(self, feedback: Feedback) -> None:
        """Feedback on a turn, recorded and published; refused, never dropped, when it
        cannot be taken."""
        if not self._session.feedback_given(feedback):  # never expected: the validator ran
            raise _refused("The feedback could not be recorded; retry later.", "events_backlog")

    @give_feedback.validator
    def _validate_feedback(self, feedback: Feedback) -> None:
        if self.state.status == "closed":
            raise SessionClosed()
        if not 1 <= feedback.turn <= self.state.turn_count:
            raise ApplicationError(
                f"The session has no turn {feedback.turn} (it has {self.state.turn_count}).",
                type="invalid_request",
            )
        backlog = self._session.backlog_bytes()
        if backlog > BACKLOG_ADMIT_BYTES:
            raise _refused(
                f"This session's events ({backlog // KIB} KiB) are waiting for the event "
                "broker; feedback is taken again once they are published. Retry later.",
                "events_backlog",
            )

    @workflow.query
    def transcript(self, request: TranscriptRequest) -> ConversationView:
        """The session and a page of its latest turns before `request.before_turn`."""
        view = self._session.page(request)
        view.running_turn = self._running
        return view

    @workflow.query
    def view(self) -> ConversationView:
        """The latest page of the transcript (also the run's result and close's answer)."""
        return self.transcript(TranscriptRequest())

    async def _turn(self, request: TurnRequest) -> TurnResult:
        self.state.turn_count += 1
        self._current = Turn(self.state, request, self.state.turn_count, self._session)
        self._touch()
        try:
            return await self._current.run()
        finally:
            self._current = None
            self._touch()

    async def _close(self, reason: str, actor: str, traceparent: str) -> None:
        self.state.status = "closed"  # first: no turn is admitted while the policy is read
        # A session closed before its first turn names the policy in force by checking "".
        policy = self.state.policy or await calls.moderate("", "input")
        self.state.policy = policy
        self._session.closed(reason, actor, traceparent, policy)

    async def _publish(self) -> None:
        await outbox.publish(self.state.outbox, self.state.settings.publish_give_up_seconds)

    def _outbox_fits_next_run(self) -> bool:
        """Whether what is left to publish may be carried: turns admitted together in a
        broker outage can pass the backlog that refuses new ones, and a run carrying them
        all could pass Temporal's payload limit. Until it fits, the run goes round
        publishing (new turns are refused meanwhile)."""
        return self._session.backlog_bytes() <= OUTBOX_CARRY_BYTES or not workflow.patched(
            OUTBOX_CARRIED_WITHIN_BOUND.id
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

    @property
    def _retention(self) -> int:
        return self.state.settings.stream_retention_seconds

    def _touch(self) -> None:
        self.state.last_activity = workflow.now().isoformat()

    def _idle_left(self) -> timedelta:
        idle = timedelta(seconds=self.state.settings.idle_timeout_seconds)
        return idle - (workflow.now() - datetime.fromisoformat(self.state.last_activity))
