"""The search attributes of docs/interface.md, section 7, by which operators find
workflows in the UI.

`orchestrator dev` registers every one of `ALL` on its Temporal server; a production
namespace needs them registered once: `orchestrator setup` does it (deploy/setup.py).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT = SearchAttributeKey.for_keyword("Tenant")
SESSION_ID = SearchAttributeKey.for_keyword("SessionId")
TURN_COUNT = SearchAttributeKey.for_int("TurnCount")
TRAINING_MODE = SearchAttributeKey.for_bool("TrainingMode")
POLICY_VERSION = SearchAttributeKey.for_keyword("PolicyVersion")
LAST_VERDICT = SearchAttributeKey.for_keyword("LastVerdict")

ALL = (TENANT, SESSION_ID, TURN_COUNT, TRAINING_MODE, POLICY_VERSION, LAST_VERDICT)
