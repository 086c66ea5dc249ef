"""The search attributes of docs/interface.md, section 7, by which operators find
workflows in the UI.

`orchestrator dev` registers every one of `ALL` on its Temporal server; a production
namespace needs them registered once: `orchestrator setup` does it (deploy/setup.py).
"""

from __future__ import annotations

import hashlib
import re

from temporalio.common import SearchAttributeKey

TENANT = SearchAttributeKey.for_keyword("Tenant")
SESSION_ID = SearchAttributeKey.for_keyword("SessionId")
TURN_COUNT = SearchAttributeKey.for_int("TurnCount")
TRAINING_MODE = SearchAttributeKey.for_bool("TrainingMode")
POLICY_VERSION = SearchAttributeKey.for_keyword("PolicyVersion")
LAST_VERDICT = SearchAttributeKey.for_keyword("LastVerdict")
#: What a session list reads (GET /v1/conversations): whose it is (a digest of the owner's
#: `sub`, never the subject itself), its title, and when it started and last took a turn.
OWNER_HASH = SearchAttributeKey.for_keyword("OwnerHash")
TITLE = SearchAttributeKey.for_text("Title")
CREATED_AT = SearchAttributeKey.for_datetime("CreatedAt")
LAST_TURN_AT = SearchAttributeKey.for_datetime("LastTurnAt")

ALL = (
    TENANT,
    SESSION_ID,
    TURN_COUNT,
    TRAINING_MODE,
    POLICY_VERSION,
    LAST_VERDICT,
    OWNER_HASH,
    TITLE,
    CREATED_AT,
    LAST_TURN_AT,
)

#: The most words of a title search taken (each must be in the title).
QUERY_WORDS = 8
_WORD = re.compile(r"\w+")
#: A title is at most this many characters.
TITLE_LENGTH = 80
_SPACES = re.compile(r"\s+")


def owner_hash(tenant: str, subject: str) -> str:
    """The `OwnerHash` of `subject`'s sessions in `tenant`: 32 hex characters, so that no
    subject (often an e-mail address) is stored in visibility, and no query quotes one."""
    return hashlib.sha256(f"{tenant}\n{subject}".encode()).hexdigest()[:32]


def title_of(message: str) -> str:
    """A session's title: its first user message (already redacted), on one line, cut at a
    word to at most TITLE_LENGTH characters."""
    line = "".join(c for c in _SPACES.sub(" ", message).strip() if c.isprintable())
    if len(line) <= TITLE_LENGTH:
        return line
    cut = line[: TITLE_LENGTH - 1]
    if " " in cut[TITLE_LENGTH // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


def sessions_query(tenant: str, owner: str | None, status: str | None = None, q: str = "") -> str:
    """The visibility query of `tenant`'s sessions: `owner`'s (None: everyone's), `status`
    `active` or `closed` (None: both), with every word of `q` in the title. The latest run
    of each session only."""
    parts = [
        f"Tenant = '{tenant}'",  # a tenant id is [A-Za-z0-9._-] (api/auth.py)
        "WorkflowType = 'ConversationWorkflow'",
        "ExecutionStatus != 'ContinuedAsNew'",
    ]
    if owner is not None:  # a digest: no subject is quoted into a query
        parts.append(f"OwnerHash = '{owner_hash(tenant, owner)}'")
    if status == "active":
        parts.append("ExecutionStatus = 'Running'")
    elif status == "closed":
        parts.append("ExecutionStatus != 'Running'")
    # Title is a Text attribute: `=` matches a whole word, whatever its case.
    parts += [f"Title = '{word}'" for word in _WORD.findall(q)[:QUERY_WORDS]]
    return " AND ".join(parts)
