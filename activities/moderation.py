"""The `moderation.check` activity: one text through the policy's layers (core/moderation/
moderator.py). It runs as a local activity, so it stays inside the workflow task and its
verdict is recorded in history, and the engine can change without breaking replay.
"""

from __future__ import annotations

from temporalio import activity

from core.moderation.moderator import Moderator
from core.moderation.verdict import ModerationRequest, Scan, ScanRequest, Verdict


class ModerationActivities:
    def __init__(self, moderator: Moderator) -> None:
        self._moderator = moderator

    @activity.defn(name="moderation.check")
    async def check(self, request: ModerationRequest) -> Verdict:
        return await self._moderator.check(
            request.text, request.stage, request.context, request.asked
        )

    @activity.defn(name="moderation.scan")
    async def scan(self, request: ScanRequest) -> list[Scan]:
        """Each text checked as a turn's input would be, with every category's score."""
        scans = []
        for text in request.texts:
            verdict, scores = await self._moderator.scan(text)
            scans.append(Scan(verdict, scores))
        return scans
