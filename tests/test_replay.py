"""Workflow code changes must replay the histories already recorded: one test per history.

Each `tests/histories/*.json` is a real run (recorded with `python -m tests.record_history`).
Conversations: a turn with an Idempotency-Key, a refused turn, feedback, and a close; v1
predates the output check inside the SLM activity, v2 predates the training-lease read, v3
has both, under a live training lease; v4 adds a streamed turn and a cancelled one; v5 is the
same run after a turn's life moved to its own module and verdicts name the moderation layer
that decided; v6 admits its turns inside the SLM activity. Training: enable, extend,
disable, a lease check, expiry. A change that would break running workflows makes its
history's test fail with a non-determinism error; such a change needs `workflow.patched`
(listed in workflows/patches.py) and a new recording. The last test shows the check can
fail: a history whose first activity was renamed must not replay.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, WorkflowReplayResult

from workflows.conversation.workflow import ConversationWorkflow
from workflows.training_mode.workflow import TrainingModeWorkflow

HISTORIES = Path(__file__).parent / "histories"
RECORDED = sorted(HISTORIES.glob("*.json"))


async def _replay(name: str, history_json: str) -> WorkflowReplayResult:
    replayer = Replayer(workflows=[ConversationWorkflow, TrainingModeWorkflow])
    history = WorkflowHistory.from_json(f"replay-{name}", history_json)
    return await replayer.replay_workflow(history, raise_on_replay_failure=False)


def test_both_workflows_have_recorded_histories() -> None:
    assert {p.stem.split("-")[0] for p in RECORDED} == {"conversation", "training"}


@pytest.mark.parametrize("path", RECORDED, ids=[p.stem for p in RECORDED])
async def test_recorded_history_replays(path: Path) -> None:
    result = await _replay(path.stem, path.read_text())
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"


async def test_a_history_the_code_did_not_make_fails_to_replay() -> None:
    history = json.loads((HISTORIES / "conversation-v6.json").read_text())
    scheduled = next(
        e["activityTaskScheduledEventAttributes"]
        for e in history["events"]
        if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    )
    assert scheduled["activityType"] == {"name": "slm.complete"}
    scheduled["activityType"] = {"name": "slm.renamed"}
    result = await _replay("renamed-activity", json.dumps(history))
    assert result.replay_failure is not None
    assert "nondeterminism" in str(result.replay_failure).lower()
