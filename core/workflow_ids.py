"""The ids of the product's workflows (docs/interface.md, section 7), for every process that
names one: the API, the workers' activities and the tests."""

from __future__ import annotations


def conversation_id(tenant: str, session_id: str) -> str:
    return f"conversation:{tenant}:{session_id}"


def erasure_id(tenant: str, job: str) -> str:
    """An erasure job: `session:<session_id>` for one session's deletion, else a job id."""
    return f"erasure:{tenant}:{job}"


def moderation_id(tenant: str, request: str) -> str:
    """One POST /v1/moderations."""
    return f"moderation:{tenant}:{request}"


def policy_change_id(tenant: str, change: str) -> str:
    """One PUT /v1/policy."""
    return f"policy:{tenant}:{change}"
