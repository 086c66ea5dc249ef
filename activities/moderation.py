"""The moderation activities. `moderation.check`: one text through the policy's layers
(core/moderation/moderator.py), as a local activity, so it stays inside the workflow task
and its verdict is recorded in history, and the engine can change without breaking replay.
`moderation.scan`: texts outside any conversation, by a tenant's policy or a candidate one
(POST /v1/moderations).
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.moderation.tenant_moderators import TenantModerators
from core.moderation.verdict import ModerationRequest, Scan, ScanRequest, Verdict
from core.tenant_policy import candidate_record


class ModerationActivities:
    def __init__(self, moderators: TenantModerators) -> None:
        self._moderators = moderators

    @activity.defn(name="moderation.check")
    async def check(self, request: ModerationRequest) -> Verdict:
        return await self._moderators.floor.check(
            request.text, request.stage, request.context, request.asked
        )

    @activity.defn(name="moderation.scan")
    async def scan(self, request: ScanRequest) -> list[Scan]:
        """Each text checked as a turn's input would be, with every category's score."""
        if request.candidate is None:
            moderator = await self._moderators.for_tenant(request.tenant)
        else:
            try:
                record = candidate_record(self._moderators.floor.policy, request.candidate)
                moderator = self._moderators.with_record(request.tenant, record)
            except ValueError as error:  # pydantic's errors are ValueErrors too
                raise ApplicationError(
                    f"The candidate policy cannot be used: {error}",
                    type="invalid_request",
                    non_retryable=True,
                ) from None
        scans = []
        for text in request.texts:
            verdict, scores = await moderator.scan(text)
            scans.append(Scan(verdict, scores))
        return scans
