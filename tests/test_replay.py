"""Workflow code changes must replay the histories already recorded.

Each `tests/histories/*.json` is a real run (recorded with `python -m tests.record_history`).
Conversations: a turn with an Idempotency-Key, a refused turn, feedback, and a close; v1
predates the output check inside the SLM activity, v2 predates the training-lease read, v3
has both, under a live training lease; v4 adds a streamed turn and a cancelled one; v5 is the
same run after a turn's life moved to workflows/turn.py and verdicts name the moderation
layer that decided. Training: enable, extend, disable, a lease check, expiry. A change that would break running workflows makes this replay raise a
non-determinism error; such a change needs `workflow.patched` and a new recording.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.conversation import ConversationWorkflow
from workflows.training_mode import TrainingModeWorkflow

HISTORIES = Path(__file__).parent / "histories"


async def test_recorded_histories_replay() -> None:
    replayer = Replayer(workflows=[ConversationWorkflow, TrainingModeWorkflow])
    paths = sorted(HISTORIES.glob("*.json"))
    assert {p.stem.split("-")[0] for p in paths} == {"conversation", "training"}
    for path in paths:
        history = WorkflowHistory.from_json(f"replay-{path.stem}", path.read_text())
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
