"""Every `workflow.patched` id, what it changed, and the committed histories that pin it.

A patch keeps the histories recorded before a change replaying on the old branch while new
runs take the new one (docs/architecture.md, Changing workflow code). `recorded_in` names
the histories in tests/histories/ that carry its marker, so their replay exercises the new
branch; those recorded before it exercise the old. tests/test_patches.py checks both lists
against the histories themselves. A patch is removed (or `deprecate_patch`ed) only once no
running workflow can still be on its old branch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Patch:
    id: str
    #: What the new branch does differently.
    change: str
    #: The committed histories whose replay takes the new branch (they carry the marker).
    recorded_in: tuple[str, ...] = ()


OUTPUT_CHECKED_BY_SLM = Patch(
    "output-checked-by-slm",
    "the SLM activity returns the output verdict with the reply",
    ("conversation-v2", "conversation-v3", "conversation-v4", "conversation-v5", "conversation-v6"),
)
TRAINING_LEASE_READ = Patch(
    "training-lease-read",
    "each turn reads the tenant's training lease beside the input check",
    ("conversation-v3", "conversation-v4", "conversation-v5"),
)
LEASE_READ_FAILURE_TOLERATED = Patch(
    "lease-read-failure-tolerated",
    "an unreadable lease leaves the turn unmarked instead of failing it (a local activity's"
    " failure reaches workflow code unwrapped); no committed history reads a failing lease",
)
ADMITTED_IN_SLM_CALL = Patch(
    "admitted-in-slm-call",
    "the input check and the lease read run in the SLM activity, before its call, instead of"
    " as local activities in the workflow task before it",
    ("conversation-v6",),
)
EVENT_IDS_PER_CHAIN = Patch(
    "event-ids-per-chain",
    "event ids include the chain's first run id, so a session id used again after its history"
    " was deleted never repeats an earlier session's event ids",
    ("conversation-v6",),
)
END_RUN_AFTER_TURN_IN_FLIGHT = Patch(
    "end-run-after-turn-in-flight",
    "a run due to end waits for the turn in flight instead of going round; no committed"
    " history ends a run with a turn in flight",
)
OUTBOX_CARRIED_WITHIN_BOUND = Patch(
    "outbox-carried-within-bound",
    "a run due to continue as new with more unpublished events than it may carry keeps"
    " publishing until the rest fits; no committed history carries so large an outbox",
)
SESSION_LISTED = Patch(
    "session-listed",
    "each turn sets the session's LastTurnAt search attribute (and, for a session started"
    " before sessions were listed, its OwnerHash and CreatedAt), for the session list",
)

PATCHES = (
    OUTPUT_CHECKED_BY_SLM,
    TRAINING_LEASE_READ,
    LEASE_READ_FAILURE_TOLERATED,
    ADMITTED_IN_SLM_CALL,
    EVENT_IDS_PER_CHAIN,
    END_RUN_AFTER_TURN_IN_FLIGHT,
    OUTBOX_CARRIED_WITHIN_BOUND,
    SESSION_LISTED,
)
