"""ModerationWorkflow (`moderation:<tenant>:<request id>`): one POST /v1/moderations.

The texts go through the same engine, on the same workers, as a turn's input check (the
`moderation.scan` local activity), so the API process loads no classifier. No conversation
is started and no event is written; the history, its texts encrypted like every payload,
goes with the namespace's retention.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.moderation.verdict import Scan, ScanRequest


# Outside the sandbox, as ConversationWorkflow: deterministic by its code (workflow APIs
# only); the modules of its activities' types load Redis and OpenTelemetry lazily, which the
# sandbox would warn of at every worker start.
@workflow.defn(sandboxed=False)
class ModerationWorkflow:
    @workflow.run
    async def run(self, request: ScanRequest) -> list[Scan]:
        scans: list[Scan] = await workflow.execute_local_activity(
            "moderation.scan",
            request,
            # A guard model may take up to 8 s per text; the classifier a few ms.
            start_to_close_timeout=timedelta(seconds=10 + 8 * len(request.texts)),
            result_type=list[Scan],
        )
        return scans
