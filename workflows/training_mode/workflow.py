"""TrainingModeWorkflow: one per tenant (`training-mode:<tenant>`), the authority on its mode.

Enable (and extend, by the same holder) and disable arrive as updates; a timer ends the mode
at `expires_at`. The lease in Redis is what every other process reads: written at enable,
checked every few seconds while the mode is on (and written back if Redis lost it), released
at the end. Every transition puts its audit event in the outbox, which a task of its own
publishes in order, so a broker outage never delays an expiry or a lease check.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from core.search_attributes import TRAINING_MODE
    from core.training_lock import Lease
    from workflows import outbox
    from workflows.cloudevents import training_event
    from workflows.timestamps import iso
    from workflows.training_mode import calls as lease_calls
    from workflows.training_mode.types import (
        DisableRequest,
        EnableRequest,
        TrainingState,
        TrainingStatus,
    )


class TrainingLocked(ApplicationError):
    def __init__(self, lease: Lease) -> None:
        super().__init__(
            f"Training mode is held by {lease.holder} until {lease.expires_at}; "
            "ask them to disable it, or wait until it expires.",
            {"holder": lease.holder, "expires_at": lease.expires_at},
            type="training_locked",
            non_retryable=True,
        )


#: How long a run due to continue as new waits for its outbox to be published first.
_DRAIN_BEFORE_NEW_RUN = timedelta(seconds=30)


def _lock_store_unavailable() -> ApplicationError:
    return ApplicationError(
        "Redis, which holds the training lock, did not answer; nothing changed. Retry in a moment.",
        {"dependency": "redis"},
        type="lock_store_unavailable",
        non_retryable=True,
    )


@workflow.defn
class TrainingModeWorkflow:
    @workflow.init
    def __init__(self, state: TrainingState) -> None:
        self.state = state
        self._lock = asyncio.Lock()
        self._next_check = workflow.now() + self._check_interval()
        #: Set by a transition: the schedule of duties changed, plan the next wake-up again.
        self._replan = False

    @workflow.run
    async def run(self, state: TrainingState) -> TrainingStatus:
        publishing = asyncio.create_task(self._publish_outbox())
        while True:
            left = self._time_to_next_duty()
            if left is None or left > timedelta(0):
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._replan or self._due_to_end_run(), timeout=left
                    )
            self._replan = False
            async with self._lock:
                await self._scheduled_duties()
            if self._due_to_end_run() and not self._lock.locked():
                # An event being published now would otherwise be sent again; past the
                # timeout the broker is away, and the next run carries the outbox.
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: workflow.all_handlers_finished() and not self.state.outbox,
                        timeout=_DRAIN_BEFORE_NEW_RUN,
                    )
                await workflow.wait_condition(workflow.all_handlers_finished)
                publishing.cancel()
                self.state.checks_this_run = 0
                workflow.continue_as_new(self.state)

    @workflow.update
    async def enable(self, request: EnableRequest) -> TrainingStatus:
        async with self._lock:
            await self._expire_if_due()
            self._check_enable(request)  # again: the state may have changed while waiting
            lease = self.state.lease
            if lease is not None and lease.holder == request.actor:
                await self._extend(lease, request)
            else:
                await self._acquire(request)
            return self.status()

    @enable.validator
    def _validate_enable(self, request: EnableRequest) -> None:
        self._check_enable(request)

    @workflow.update
    async def disable(self, request: DisableRequest) -> TrainingStatus:
        async with self._lock:
            await self._expire_if_due()
            lease = self.state.lease
            if lease is None:
                return self.status()  # already off: nothing to do, nothing to audit
            try:
                await lease_calls.release(self.state.settings.tenant, lease.token, lease.expires_at)
            except ActivityError:
                raise _lock_store_unavailable() from None
            self.state.lease = None
            self._transition("disabled", request, lease)
            return self.status()

    @workflow.query
    def status(self) -> TrainingStatus:
        lease = self.state.lease
        return TrainingStatus(
            tenant=self.state.settings.tenant,
            enabled=lease is not None,
            holder=lease.holder if lease else None,
            fence=self.state.fence,
            reason=lease.reason if lease else None,
            enabled_at=lease.enabled_at if lease else None,
            expires_at=lease.expires_at if lease else None,
        )

    async def _publish_outbox(self) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self.state.outbox))
            await outbox.publish(self.state.outbox)

    def _check_enable(self, request: EnableRequest) -> None:
        settings = self.state.settings
        if not settings.min_ttl_seconds <= request.ttl_seconds <= settings.max_ttl_seconds:
            raise ApplicationError(
                f"ttl_seconds must be from {settings.min_ttl_seconds} to "
                f"{settings.max_ttl_seconds}; got {request.ttl_seconds}.",
                type="invalid_request",
                non_retryable=True,
            )
        lease = self.state.lease
        live = lease is not None and workflow.now() < datetime.fromisoformat(lease.expires_at)
        if lease is not None and live and lease.holder != request.actor:
            raise TrainingLocked(lease)

    async def _acquire(self, request: EnableRequest) -> None:
        await self._settle_unknown_acquires(raise_on_failure=True)
        now = workflow.now()
        lease = Lease(
            # From the workflow's seeded random: the same token on replay and on every retry.
            token=str(workflow.uuid4()),
            holder=request.actor,
            fence=self.state.fence + 1,  # the lowest fence Redis may hand out
            reason=request.reason,
            enabled_at=iso(now),
            expires_at=iso(now + timedelta(seconds=request.ttl_seconds)),
        )
        try:
            result = await lease_calls.acquire(self.state.settings.tenant, lease)
        except ActivityError:
            # It may have been written before Redis stopped answering: released later.
            self.state.unsettled_tokens.append(lease.token)
            raise _lock_store_unavailable() from None
        if not result.acquired:  # a lease this workflow did not write (left by an earlier one)
            raise TrainingLocked(result.lease)
        self.state.lease, self.state.fence = result.lease, result.lease.fence
        self._next_check = now + self._check_interval()
        self._transition("enabled", request, None)

    async def _extend(self, lease: Lease, request: EnableRequest) -> None:
        expires = workflow.now() + timedelta(seconds=request.ttl_seconds)
        extended = dataclasses.replace(lease, reason=request.reason, expires_at=iso(expires))
        try:
            outcome = (await lease_calls.renew(self.state.settings.tenant, extended)).outcome
        except ActivityError:
            raise _lock_store_unavailable() from None
        if outcome == "held_by_other":
            raise _lock_store_unavailable()  # never expected: only this workflow writes the key
        self.state.lease = extended
        self._transition("extended", request, lease)

    async def _scheduled_duties(self) -> None:
        await self._expire_if_due()
        if workflow.now() < self._next_check:
            return
        self._next_check = workflow.now() + self._check_interval()
        if self.state.lease is not None:
            await self._check_lease(self.state.lease)
        await self._settle_unknown_acquires(raise_on_failure=False)

    async def _expire_if_due(self) -> None:
        lease = self.state.lease
        if lease is None or workflow.now() < datetime.fromisoformat(lease.expires_at):
            return
        self.state.lease = None
        self._transition("expired", DisableRequest(actor="system", reason="the ttl ran out"), lease)
        # Redis dropped the key at the same moment; this only makes sure.
        self.state.unsettled_tokens.append(lease.token)
        await self._settle_unknown_acquires(raise_on_failure=False)

    async def _check_lease(self, lease: Lease) -> None:
        self.state.checks_this_run += 1
        tenant = self.state.settings.tenant
        try:
            outcome = (await lease_calls.renew(tenant, lease)).outcome
        except ActivityError:
            workflow.logger.warning("cannot check the training lock; Redis is not answering")
            return
        if outcome == "restored":
            workflow.logger.warning(
                "training lock was missing in Redis; written back", extra=self._log_fields(lease)
            )
        elif outcome == "held_by_other":
            workflow.logger.error(
                "training lock is held by a lease this workflow did not write",
                extra=self._log_fields(lease),
            )

    async def _settle_unknown_acquires(self, *, raise_on_failure: bool) -> None:
        while self.state.unsettled_tokens:
            try:
                await lease_calls.release(
                    self.state.settings.tenant, self.state.unsettled_tokens[0]
                )
            except ActivityError:
                if raise_on_failure:
                    raise _lock_store_unavailable() from None
                return
            self.state.unsettled_tokens.pop(0)

    def _transition(
        self, kind: str, request: EnableRequest | DisableRequest, previous: Lease | None
    ) -> None:
        """Record a transition asked for by `request`: its audit event, the search attribute,
        a log line. `previous` is the lease before it (None when the mode was off)."""
        state = self.state
        lease = state.lease or previous
        assert lease is not None
        if request.policy.policy_version:  # an expiry keeps the policy of the last request
            state.policy = request.policy
        state.transitions += 1
        info = workflow.info()
        state.outbox.append(
            training_event(
                state,
                kind,
                request,
                previous,
                # The chain's first run id: ids stay unique even if the workflow id is reused.
                chain=f"{info.workflow_id}/{info.first_execution_run_id}",
                time=workflow.now(),
            )
        )
        workflow.upsert_search_attributes([TRAINING_MODE.value_set(state.lease is not None)])
        self._replan = True
        workflow.logger.info(
            "training mode %s by %s",
            kind,
            request.actor,
            extra={"actor": request.actor, "trace_id": request.trace_id, **self._log_fields(lease)},
        )

    def _log_fields(self, lease: Lease) -> dict[str, object]:
        return {
            "tenant": self.state.settings.tenant,
            "holder": lease.holder,
            "fence": lease.fence,
            "enabled_at": lease.enabled_at,
            "expires_at": lease.expires_at,
        }

    def _time_to_next_duty(self) -> timedelta | None:
        """Until the lease expires or is due for its check; None while there is nothing to do."""
        due: list[datetime] = []
        if self.state.lease is not None:
            due += [datetime.fromisoformat(self.state.lease.expires_at), self._next_check]
        if self.state.unsettled_tokens:
            due.append(self._next_check)
        return min(due) - workflow.now() if due else None

    def _check_interval(self) -> timedelta:
        return timedelta(seconds=self.state.settings.lease_check_seconds)

    def _due_to_end_run(self) -> bool:
        return (
            workflow.info().is_continue_as_new_suggested()
            or self.state.checks_this_run >= self.state.settings.checks_per_run
        )
