"""A tenant's sessions, as Temporal's visibility knows them: the session list's query, order
and pages (GET /v1/conversations), with no database of our own.

Each session's latest run carries the search attributes of core/search_attributes.py;
runs that continued as new are left out, so a session is listed once. Visibility has no
ORDER BY (outside Elasticsearch), so the matching sessions are read (at most SCAN_LIMIT)
and ordered here, newest activity first; the cursor is the last item's place in that order.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from redis.exceptions import RedisError
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import WorkflowExecution, WorkflowExecutionStatus

from api.temporal_errors import temporal_errors
from core.clients import Clients
from core.errors import InvalidRequest
from core.redis_keys import deleted_sessions_key
from core.search_attributes import (
    CREATED_AT,
    LAST_TURN_AT,
    LAST_VERDICT,
    SESSION_ID,
    TITLE,
    TURN_COUNT,
    sessions_query,
)

log = logging.getLogger("orchestrator.api")
#: The most sessions one list request reads from visibility (the latest started first).
SCAN_LIMIT = 2000
#: How long the namespace's retention is taken as known.
_RETENTION_SECONDS = 300.0


@dataclass(frozen=True)
class SessionItem:
    session_id: str
    title: str
    status: str  # active or closed
    turn_count: int
    created_at: datetime
    last_turn_at: datetime | None
    last_verdict: str | None
    #: An active session closes by itself when idle this long after its last turn (about).
    idle_close_at: datetime | None
    #: A closed session's history is deleted by Temporal then (the namespace's retention).
    deleted_after: datetime | None

    @property
    def activity(self) -> datetime:
        return self.last_turn_at or self.created_at


@dataclass(frozen=True)
class Search:
    tenant: str
    #: Whose sessions: a subject, or None for every session of the tenant.
    owner: str | None
    status: str | None = None
    q: str = ""

    def query(self) -> str:
        return sessions_query(self.tenant, self.owner, self.status, self.q)


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: its last item's activity time and session id."""

    activity: datetime
    session_id: str

    def encode(self) -> str:
        raw = json.dumps([self.activity.isoformat(), self.session_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            at, session_id = json.loads(raw)
            return cls(datetime.fromisoformat(at), str(session_id))
        except (ValueError, TypeError, binascii.Error):
            raise InvalidRequest(
                "The cursor is not one this API gave: pass `next_cursor` of the previous "
                "page as it is, or leave it out for the first page."
            ) from None


async def sessions_page(
    clients: Clients, search: Search, limit: int, after: Cursor | None
) -> tuple[list[SessionItem], Cursor | None]:
    """A page of at most `limit` sessions matching `search` after `after`, newest activity
    first, and the cursor of the next page (None on the last)."""
    retention = await _retention(clients)
    idle = timedelta(seconds=clients.settings.conversation_idle_timeout_seconds)
    found: list[SessionItem] = []
    with temporal_errors("sessions"):
        async for execution in clients.temporal.list_workflows(
            search.query(), limit=SCAN_LIMIT, page_size=min(SCAN_LIMIT, 1000)
        ):
            found.append(_item(execution, idle, retention))
    found = await _not_deleted(clients, search.tenant, found)
    found.sort(key=lambda item: (item.activity, item.session_id), reverse=True)
    if after is not None:
        found = [
            i for i in found if (i.activity, i.session_id) < (after.activity, after.session_id)
        ]
    page = found[:limit]
    more = len(found) > limit
    return page, Cursor(page[-1].activity, page[-1].session_id) if more else None


async def _not_deleted(
    clients: Clients, tenant: str, found: list[SessionItem]
) -> list[SessionItem]:
    """`found` but the sessions deleted a moment ago, which visibility may still list."""
    if not found:
        return found
    try:
        gone = await clients.redis.smismember(
            deleted_sessions_key(tenant), [item.session_id for item in found]
        )
    except RedisError as error:
        log.warning("deleted sessions not checked (Redis): %s", error)
        return found
    return [item for item, deleted in zip(found, gone, strict=True) if not deleted]


def _item(execution: WorkflowExecution, idle: timedelta, retention: timedelta) -> SessionItem:
    attributes = execution.typed_search_attributes
    active = execution.status == WorkflowExecutionStatus.RUNNING
    last_turn_at = attributes.get(LAST_TURN_AT)
    created_at = attributes.get(CREATED_AT) or execution.start_time
    closed_at = execution.close_time
    return SessionItem(
        session_id=attributes.get(SESSION_ID) or execution.id.split(":", 2)[-1],
        title=attributes.get(TITLE) or "",
        status="active" if active else "closed",
        turn_count=attributes.get(TURN_COUNT) or 0,
        created_at=created_at,
        last_turn_at=last_turn_at,
        last_verdict=attributes.get(LAST_VERDICT),
        idle_close_at=(last_turn_at or created_at) + idle if active else None,
        deleted_after=closed_at + retention if closed_at and not active else None,
    )


_retention_cache: dict[str, tuple[float, timedelta]] = {}


async def _retention(clients: Clients) -> timedelta:
    """The namespace's retention: how long Temporal keeps a closed session's history."""
    namespace = clients.temporal.namespace
    known = _retention_cache.get(namespace)
    if known and time.monotonic() - known[0] < _RETENTION_SECONDS:
        return known[1]
    with temporal_errors(f"namespace {namespace}"):
        described = await clients.temporal.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace)
        )
    retention = described.config.workflow_execution_retention_ttl.ToTimedelta()
    _retention_cache[namespace] = (time.monotonic(), retention)
    return retention
