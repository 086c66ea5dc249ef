"""GET /v1/conversations: each caller lists what they may see, from Temporal's visibility,
newest activity first, in pages, filtered by status and by the title's words."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx


def _bearer(token: Callable[..., str], tenant: str, role: str, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant, role, subject=subject)}"}


async def _listed(
    api: httpx.AsyncClient, headers: dict[str, str], expected: int, **params: Any
) -> list[dict[str, Any]]:
    """Every session listed with `params`, page by page, once `expected` are there
    (visibility is eventually consistent: a session appears soon after its first turn)."""
    async with asyncio.timeout(30):
        while True:
            sessions: list[dict[str, Any]] = []
            cursor = None
            while True:
                page = await api.get(
                    "/v1/conversations",
                    params={**params, **({"cursor": cursor} if cursor else {})},
                    headers=headers,
                )
                assert page.status_code == 200, page.text
                sessions += page.json()["sessions"]
                cursor = page.json()["next_cursor"]
                if cursor is None:
                    break
            if len(sessions) >= expected:
                return sessions
            await asyncio.sleep(0.2)


async def test_each_caller_lists_what_they_may_see_in_pages_and_filters(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    run = uuid.uuid4().hex[:8]
    alice = _bearer(token, "acme", "user", f"alice-{run}")
    bob = _bearer(token, "acme", "user", f"bob-{run}")
    admin = _bearer(token, "acme", "admin", f"admin-{run}")
    carol = _bearer(token, "globex", "user", f"carol-{run}")
    first_messages = [
        (alice, "Write me to alice@example.com with tips on reading a CSV in Python."),
        (alice, "What goes into a good apple pie?"),
        (alice, "Plan three days in Lisbon for me."),
        (bob, "What goes into a good apple crumble?"),
        (carol, "Name a colour."),
    ]
    ids = []
    for headers, message in first_messages:
        session = f"list-{run}-{len(ids)}"
        step = await api.post(
            "/v1/conversation/step",
            json={"session_id": session, "message": message},
            headers=headers,
            timeout=120,
        )
        assert step.status_code == 200, step.text
        ids.append(session)
    closed = await api.post(f"/v1/conversation/{ids[0]}/close", headers=alice)
    assert closed.status_code == 200, closed.text

    # Closing ends the workflow a moment after its answer: visibility then says closed.
    closed_only = await _listed(api, alice, 1, status="closed")
    assert [s["session_id"] for s in closed_only] == [ids[0]]
    # Her own, newest activity first, each once over pages of two.
    mine = await _listed(api, alice, 3, limit=2)
    assert [s["session_id"] for s in mine] == [ids[2], ids[1], ids[0]]
    by_id = {s["session_id"]: s for s in mine}
    assert by_id[ids[0]]["title"].startswith("Write me to [EMAIL] with tips")
    assert "alice@" not in str(mine)
    assert by_id[ids[0]]["status"] == "closed" and by_id[ids[0]]["deleted_after"]
    assert by_id[ids[1]]["status"] == "active" and by_id[ids[1]]["idle_close_at"]
    assert by_id[ids[1]]["turn_count"] == 1 and by_id[ids[1]]["last_verdict"] == "allow"
    assert by_id[ids[1]]["created_at"] <= by_id[ids[1]]["last_turn_at"]

    active_only = await _listed(api, alice, 2, status="active")
    assert [s["session_id"] for s in active_only] == [ids[2], ids[1]]
    pies = await _listed(api, alice, 1, q="apple PIE")
    assert [s["session_id"] for s in pies] == [ids[1]]
    assert await _listed(api, alice, 0, q="crumble") == []

    assert [s["session_id"] for s in await _listed(api, bob, 1)] == [ids[3]]
    assert [s["session_id"] for s in await _listed(api, carol, 1)] == [ids[4]]
    of_alice = await _listed(api, admin, 3, owner=f"alice-{run}")
    assert [s["session_id"] for s in of_alice] == [ids[2], ids[1], ids[0]]
    tenant = {s["session_id"] for s in await _listed(api, admin, 4, all="true")}
    assert set(ids[:4]) <= tenant and ids[4] not in tenant  # acme's, never globex's


async def test_what_a_list_cannot_take_is_refused(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    user = _bearer(token, "acme", "user", "someone")
    for params in ({"owner": "someone-else"}, {"all": "true"}):
        refused = await api.get("/v1/conversations", params=params, headers=user)
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden", params
    for params in ({"limit": 0}, {"limit": 101}, {"status": "open"}, {"cursor": "not-ours"}):
        refused = await api.get("/v1/conversations", params=params, headers=user)
        assert refused.status_code == 422, (params, refused.text)
        assert refused.json()["code"] == "validation_error"
    assert (
        "cursor"
        in (await api.get("/v1/conversations", params={"cursor": "bm90"}, headers=user)).json()[
            "detail"
        ]
    )
