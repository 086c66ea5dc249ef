"""One turn of a conversation, from its admission to its end.

A turn reads as its steps, in order:

1. `_complete`: the SLM activity on its own task queue, within what is left of the turn's
   time. It admits the turn first (core/admission.py): the input check (the message
   with the session's recent answered turns, and each message of a seed the turn brings,
   workflows/conversation/history.py) beside the tenant's training lease; only an allowed input
   reaches
   the SLM server. It checks its own reply (the output check) where
   it is produced.
2. `_end`: the turn's record, handed to the session (workflows/conversation/session_record.py, which
   keeps it, shows it in search attributes and tells it in an event), and for a streamed
   turn the stream's last events.

Sessions from before admissions ran in the SLM activity (`ADMITTED_IN_SLM_CALL`) still check
the input and read the lease first, as local activities (workflows/conversation/admitted_first.py).
An SLM activity that
fails for good or is cancelled leaves the input verdict unknown: the input is then checked
on its own, and a refusal still ends the turn `refused`.

The stream is one collaborator (`TurnStream`): the turn hands its opening to the SLM call,
which adds the input verdict, and ends it. Workflow code: run only inside a workflow.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, RetryState

with workflow.unsafe.imports_passed_through():
    from activities.redis_stream import StreamEvent
    from activities.slm import SLM_REJECTED, Completion, CompletionRequest
    from core.admission import AdmissionRequest
    from core.errors import DependencyUnavailable, OrchestratorError, SlmRejected, TurnTimedOut
    from core.moderation.verdict import ModerationRequest, Verdict
    from core.training_lock import Lease
    from core.usage import Account
    from workflows.conversation import admitted_first, calls
    from workflows.conversation.context import recent_context
    from workflows.conversation.history import seed_checks, takes_seed
    from workflows.conversation.session_record import SessionRecord
    from workflows.conversation.stream_events import (
        SLM_FAILED,
        TurnStream,
        closing,
        record_body,
        time_limit_detail,
    )
    from workflows.conversation.types import (
        ConversationState,
        Sampling,
        TurnRecord,
        TurnRequest,
        TurnResult,
        Usage,
    )
    from workflows.patches import ADMITTED_IN_SLM_CALL, OUTPUT_CHECKED_BY_SLM
    from workflows.timestamps import iso

#: The input check is sent this many of the session's latest answered user turns; the
#: policy's `context_turns` says how many of them it reads.
MODERATION_CONTEXT_TURNS = 10


class TurnCancelled(Exception):
    """The running turn was cancelled (by the `cancel` update); it ends `cancelled`."""


class _SlmFailed(Exception):
    """The SLM call failed for good: the problem the turn ends with, and its kind."""

    def __init__(self, error: ActivityError, limit_seconds: float) -> None:
        super().__init__(str(error))
        self.error = error
        cause = error.cause
        self.problem: OrchestratorError
        if error.retry_state == RetryState.TIMEOUT:  # out of time, retries included
            self.problem, self.kind = TurnTimedOut(time_limit_detail(limit_seconds)), "turn_timeout"
        elif isinstance(cause, ApplicationError) and cause.type == SLM_REJECTED:
            self.problem = SlmRejected(f"{cause.message.rstrip('.')}. Shorten the message.")
            self.kind = SLM_REJECTED
        else:
            self.problem, self.kind = DependencyUnavailable(SLM_FAILED), "slm_unavailable"


class Turn:
    def __init__(
        self,
        state: ConversationState,
        request: TurnRequest,
        number: int,
        session: SessionRecord,
    ) -> None:
        self.number = number
        self.cancel_asked = False
        self._state = state
        self._request = request
        self._session = session
        self._started = workflow.now()
        self._lease: Lease | None = None
        self._admitted_in_call = True
        self._slm_call: workflow.ActivityHandle[Completion] | None = None
        #: The earlier messages this turn seeds its session with, kept once admitted.
        self._seed = request.seed if takes_seed(state) else []
        settings = state.settings
        self._stream = TurnStream.of(
            request, number, settings.stream_retention_seconds, state.turns
        )

    def cancel(self) -> None:
        """Stop the turn; its SLM call too, if it is running."""
        self.cancel_asked = True
        if self._slm_call is not None:
            self._slm_call.cancel()

    async def run(self) -> TurnResult:
        # The input check's verdict comes with the SLM activity's result (older sessions
        # check first).
        first_check: Verdict | None = None
        self._admitted_in_call = workflow.patched(ADMITTED_IN_SLM_CALL.id)
        if not self._admitted_in_call:
            tenant = self._state.settings.tenant
            first_check, self._lease = await admitted_first.admit(self._check_input(), tenant)
            if first_check.decision == "refuse":
                return await self._refused_at_input(first_check)
        self._open_stream(first_check)
        try:
            completion = await self._complete()
        except TurnCancelled:
            await self._cancelled(first_check or await self._check_input())
            raise ApplicationError(
                f"Turn {self.number} was cancelled.", type="turn_cancelled", non_retryable=True
            ) from None
        except _SlmFailed as failed:
            # The input check ran in the failed activity: asked again, it may refuse the turn.
            first_check = first_check or await self._check_input()
            if first_check.decision == "refuse":
                return await self._refused_at_input(first_check)
            raise await self._failed(failed, first_check) from failed.error
        if completion.admitted is not None:
            first_check, self._lease = completion.admitted.verdict, completion.admitted.lease
            self._state.policy = first_check
            if self._seed and not completion.admitted.seed_refused:
                self._state.seed = self._seed
                self._state.seed_dropped = len(self._request.history) - len(self._seed)
        # An SLM worker from before admissions (a rolling upgrade) ignores the request's.
        first_check = first_check or await self._check_input()
        if first_check.decision == "refuse":
            return await self._refused_at_input(first_check)
        usage = Usage(completion.prompt_tokens, completion.completion_tokens)
        timings = {
            "input_moderation": first_check.duration_seconds,
            "slm": completion.duration_seconds,
        }
        checks = [first_check, await self._output_verdict(completion)]
        timings["output_moderation"] = checks[-1].duration_seconds
        if checks[-1].decision == "refuse":
            return await self._end("refused", checks[-1].message, checks, usage, timings)
        reason = completion.finish_reason
        return await self._end("completed", completion.text, checks, usage, timings, reason)

    async def _check_input(self) -> Verdict:
        return await self._moderate(
            self._request.message, "input", self._context_for_check(), self._asked_for_check()
        )

    def _context_for_check(self) -> list[str]:
        # Refused turns stay out: one refusal must not make the next innocent message look bad.
        answered = [t.message for t in self._state.turns if t.status == "completed"]
        return answered[-MODERATION_CONTEXT_TURNS:]

    def _asked_for_check(self) -> list[str]:
        # ... except for a follow-up ("now the whole thing"), which asks for what was refused.
        asked = [t.message for t in self._state.turns if t.status in ("completed", "refused")]
        return asked[-MODERATION_CONTEXT_TURNS:]

    def _open_stream(self, verdict: Verdict | None) -> None:
        if self._stream is not None:
            session_id = self._state.settings.session_id
            self._stream.open(session_id, self._request.trace_id, verdict)

    async def _refused_at_input(self, verdict: Verdict) -> TurnResult:
        self._open_stream(verdict)  # the stream's opening, if still unwritten, has the verdict
        timings = {"input_moderation": verdict.duration_seconds}
        return await self._end("refused", verdict.message, [verdict], Usage(), timings)

    async def _complete(self) -> Completion:
        """The SLM activity, which admits the turn first (unless the workflow did)."""
        settings = self._state.settings
        if self.cancel_asked:
            raise TurnCancelled()
        admission = None
        if self._admitted_in_call:
            check = ModerationRequest(
                self._request.message,
                "input",
                self._context_for_check(),
                self._asked_for_check(),
            )
            admission = AdmissionRequest(check, settings.tenant, seed_checks(self._seed))
        # The SLM call gets what is left of the turn's time, its retries included: a turn
        # stuck there (no SLM worker, a server that never answers) ends `failed` at the limit.
        limit = timedelta(seconds=settings.max_turn_seconds)
        time_left = max(limit - (workflow.now() - self._started), timedelta(seconds=1))
        self._slm_call = calls.start_completion(
            CompletionRequest(
                messages=recent_context(
                    self._state.turns,
                    self._request.message,
                    settings.context_token_budget,
                    self._seed or self._state.seed,
                ),
                **(self._request.sampling or Sampling()).for_call(settings.max_reply_tokens),
                stream=self._stream.target if self._stream else None,
                opening=self._stream.opening if self._stream else [],
                admission=admission,
                account=Account(
                    settings.tenant,
                    self._request.actor,
                    f"{workflow.info().workflow_id}/{self.number}",
                ),
            ),
            settings.slm_task_queue,
            time_left,
        )
        try:
            return await self._slm_call
        except ActivityError as error:
            if isinstance(error.cause, CancelledError) and self.cancel_asked:
                raise TurnCancelled() from None
            raise _SlmFailed(error, limit.total_seconds()) from None

    async def _failed(self, failed: _SlmFailed, verdict: Verdict) -> ApplicationError:
        """The record and stream of a turn whose SLM call failed; the error it ends with."""
        record = self._ended("failed", "", verdict, Usage())
        record.problem = failed.problem.problem(self._request.trace_id)
        self._session.turn_ended(record)
        self._open_stream(verdict)
        if self._stream is not None:
            await self._stream.end([StreamEvent("error", record.problem)])
        return ApplicationError(failed.problem.detail, type=failed.kind, non_retryable=True)

    async def _cancelled(self, verdict: Verdict) -> None:
        record = self._ended("cancelled", "", verdict, Usage())
        self._session.turn_ended(record)
        self._open_stream(verdict)
        if self._stream is not None:
            info = workflow.info()
            session_id = self._state.settings.session_id
            body = record_body(record, session_id, info.workflow_id, info.run_id)
            await self._stream.end([StreamEvent("turn.cancelled", body)])

    async def _output_verdict(self, completion: Completion) -> Verdict:
        # Histories from before the SLM activity checked its own output ran a second local
        # activity here; they still replay. So does a reply from a worker without the check.
        if workflow.patched(OUTPUT_CHECKED_BY_SLM.id) and completion.verdict is not None:
            self._state.policy = completion.verdict
            return completion.verdict
        return await self._moderate(completion.text, "output")

    async def _moderate(
        self,
        text: str,
        stage: str,
        context: list[str] | None = None,
        asked: list[str] | None = None,
    ) -> Verdict:
        verdict = await calls.moderate(text, stage, context, asked)
        self._state.policy = verdict
        return verdict

    async def _end(
        self,
        status: str,
        reply: str,
        checks: list[Verdict],
        usage: Usage,
        timings: dict[str, float],
        finish_reason: str = "",
    ) -> TurnResult:
        verdict = checks[-1]
        self._session.turn_ended(self._ended(status, reply, verdict, usage))
        info = workflow.info()
        result = TurnResult(
            session_id=self._state.settings.session_id,
            turn=self.number,
            status=status,
            reply=reply,
            verdict=verdict,
            usage=usage,
            training_mode=self._lease is not None,
            trace_id=self._request.trace_id,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            checks=checks,
            timings=timings,
            finish_reason=finish_reason,
        )
        if self._stream is not None:
            await self._stream.end(closing(result))
        # One line per turn, joined to its trace; never the message or the reply.
        workflow.logger.info(
            "turn %s %s",
            self.number,
            status,
            extra={
                "trace_id": self._request.trace_id,
                "turn": self.number,
                "status": status,
                "decision": verdict.decision,
                "category": verdict.category,
                "completion_tokens": usage.completion_tokens,
            },
        )
        return result

    def _ended(self, status: str, reply: str, verdict: Verdict, usage: Usage) -> TurnRecord:
        """The record of the turn, ended now, marked if it ran under a training lease."""
        return TurnRecord(
            turn=self.number,
            message=self._request.message,
            reply=reply,
            status=status,
            verdict=verdict,
            trace_id=self._request.trace_id,
            started_at=iso(self._started),
            completed_at=iso(workflow.now()),
            usage=usage,
            training_mode=self._lease is not None,
            training_fence=self._lease.fence if self._lease else None,
            metadata=self._request.metadata,
            traceparent=self._request.traceparent,
            actor=self._request.actor,
        )
