"""What a session keeps and tells: its turns and their feedback, its events, its search
attributes, the pages its transcript answers, and what one run carries to the next.

A turn (workflows/conversation/turn.py) hands its record here when it ends; the conversation
workflow
publishes the outbox this fills. Everything kept is capped by bytes
(workflows/conversation/sizes.py), so
no turn, however long within the API's limits, can push a payload past Temporal's.

Workflow code: run only inside a workflow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from core.moderation.verdict import Verdict
    from core.search_attributes import (
        CREATED_AT,
        LAST_TURN_AT,
        LAST_VERDICT,
        OWNER_HASH,
        POLICY_VERSION,
        TRAINING_MODE,
        TURN_COUNT,
        owner_hash,
    )
    from workflows.cloudevents import (
        closed_data,
        conversation_event,
        event_id,
        feedback_data,
        turn_data,
    )
    from workflows.conversation.history import takes_seed
    from workflows.conversation.sizes import KIB, encoded_size, latest_within
    from workflows.conversation.types import (
        ConversationState,
        ConversationView,
        Feedback,
        TranscriptRequest,
        TurnRecord,
    )
    from workflows.patches import EVENT_IDS_PER_CHAIN, SESSION_LISTED

#: What continue-as-new carries, at most: the latest turns (for the transcript, the SLM's
#: context and the input check's) and Idempotency-Key results, within these many bytes.
CARRIED_TURNS = 100
CARRIED_TURN_BYTES = 384 * KIB
CARRIED_IDEMPOTENCY_KEYS = 256
CARRIED_IDEMPOTENCY_BYTES = 256 * KIB
#: Events not yet published (the broker is away): past this, the session takes no new turn
#: (503, retry later) until they are out; the run's state stays far below Temporal's limit.
BACKLOG_ADMIT_BYTES = 512 * KIB
#: The most of the outbox a run carries to the next; past it, a run due to end keeps
#: publishing until what is left fits (turns admitted together can pass the admit bound).
OUTBOX_CARRY_BYTES = 1024 * KIB
#: Feedback arriving past this backlog is dropped (logged); the API refuses it before.
BACKLOG_HARD_BYTES = 2 * BACKLOG_ADMIT_BYTES
#: A turn's record keeps its latest feedback within this (every one is still published).
FEEDBACK_BYTES_PER_TURN = 16 * KIB
#: One transcript page (a query answer, close's answer, the run's result) at most.
PAGE_BYTES = 1024 * KIB


class SessionRecord:
    def __init__(self, state: ConversationState) -> None:
        self.state = state

    def turn_ended(self, record: TurnRecord) -> None:
        """Keep the turn, show it in the session's search attributes, and tell it."""
        self.state.turns.append(record)
        updates: list[SearchAttributeUpdate[Any]] = [
            TURN_COUNT.value_set(record.turn),
            LAST_VERDICT.value_set(record.verdict.decision),
            POLICY_VERSION.value_set(record.verdict.policy_version),
            TRAINING_MODE.value_set(record.training_mode),
        ]
        if workflow.patched(SESSION_LISTED.id):
            updates += self._listed()
        workflow.upsert_search_attributes(updates)
        self._emit(
            f"conversation.turn.{record.status}",
            self._event_id("turn", record.turn),
            record.traceparent,
            turn_data(self.state.settings.session_id, record),
            record.verdict,
            decision=record.verdict.decision,
        )

    def _listed(self) -> list[SearchAttributeUpdate[Any]]:
        """When the session last took a turn; for a session started before sessions were
        listed, also whose it is and when it started, so it is listed from now (untitled:
        no text of a conversation goes to visibility unless the API chose to put it)."""
        updates: list[SearchAttributeUpdate[Any]] = [LAST_TURN_AT.value_set(workflow.now())]
        settings = self.state.settings
        known = workflow.info().typed_search_attributes
        if settings.owner and known.get(OWNER_HASH) is None:
            updates.append(OWNER_HASH.value_set(owner_hash(settings.tenant, settings.owner)))
            if self.state.turns:
                started = datetime.fromisoformat(self.state.turns[0].started_at)
                updates.append(CREATED_AT.value_set(started))
        return updates

    def feedback_given(self, feedback: Feedback) -> bool:
        """Record and publish `feedback`; False when it cannot be (an unknown turn, or the
        events backlog past its hard cap)."""
        state = self.state
        if not 1 <= feedback.turn <= state.turn_count or state.policy is None:
            workflow.logger.warning("feedback for unknown turn %s ignored", feedback.turn)
            return False
        if self.backlog_bytes() > BACKLOG_HARD_BYTES:
            workflow.logger.warning("feedback for turn %s dropped: events backlog", feedback.turn)
            return False
        state.feedback_count += 1
        for record in state.turns:
            if record.turn == feedback.turn:
                record.feedback = latest_within(
                    [*record.feedback, feedback], FEEDBACK_BYTES_PER_TURN
                )
        self._emit(
            "conversation.feedback",
            self._event_id("feedback", state.feedback_count),
            feedback.traceparent,
            feedback_data(state.settings.session_id, feedback),
            state.policy,
        )
        return True

    def closed(self, reason: str, actor: str, traceparent: str, policy: Verdict) -> None:
        """Tell that the session closed (its status is already `closed`)."""
        self._emit(
            "conversation.closed",
            self._event_id("closed", 1),
            traceparent,
            closed_data(self.state.settings.session_id, reason, self.state.turn_count, actor),
            policy,
        )

    def backlog_bytes(self) -> int:
        """The bytes of the events waiting for the broker."""
        return encoded_size(self.state.outbox) if self.state.outbox else 0

    def page(self, request: TranscriptRequest) -> ConversationView:
        """The session and its latest turns before `request.before_turn`: at most
        `request.limit` of them, and no more than fit in PAGE_BYTES."""
        state = self.state
        older = [t for t in state.turns if not request.before_turn or t.turn < request.before_turn]
        page = (
            latest_within(older[len(older) - request.limit :], PAGE_BYTES) if request.limit else []
        )
        info = workflow.info()
        return ConversationView(
            session_id=state.settings.session_id,
            status=state.status,
            turns=page,
            training_mode=bool(state.turns) and state.turns[-1].training_mode,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            turn_count=state.turn_count,
            earlier_turns=state.earlier_turns,
            next_before=page[0].turn if page and len(older) > len(page) else None,
            owner=state.settings.owner,
            backlog_bytes=self.backlog_bytes(),
            seed=state.seed,
            takes_seed=takes_seed(state),
        )

    def carried(self) -> ConversationState:
        """The state for the next run: the latest turns and results that fit their budgets,
        every unpublished event (at most OUTBOX_CARRY_BYTES: a run with more keeps publishing)."""
        state = self.state
        kept = latest_within(state.turns[-CARRIED_TURNS:], CARRIED_TURN_BYTES)
        state.earlier_turns += len(state.turns) - len(kept)
        state.turns = kept
        results = list(state.idempotency.items())[-CARRIED_IDEMPOTENCY_KEYS:]
        state.idempotency = dict(latest_within(results, CARRIED_IDEMPOTENCY_BYTES))
        state.run_started_at_turn = state.turn_count
        return state

    def _event_id(self, kind: str, sequence: int) -> str:
        info = workflow.info()
        chain = info.workflow_id
        if workflow.patched(EVENT_IDS_PER_CHAIN.id):
            chain = f"{info.workflow_id}/{info.first_execution_run_id}"
        return event_id(chain, kind, sequence)

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
