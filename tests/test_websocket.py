"""The conversation WebSocket on the real stack: turns, cancel, resume, the handshake's
refusals, and a reader that reads nothing (docs/api.md, WebSocket)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.typing import Subprotocol

from tests.helpers.sse import Event, events, ids_in_order, text

FINAL = {"turn.completed", "turn.refused", "turn.cancelled", "error"}
LONG = "Write a long story about a lighthouse keeper."


def _session() -> str:
    return f"ws-{uuid.uuid4().hex[:12]}"


def _url(api_url: str, query: str = "") -> str:
    return api_url.replace("http://", "ws://", 1) + "/v1/conversation/ws" + query


def _bearer(token: Callable[..., str], tenant: str = "acme", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(tenant, 'user', **claims)}"}


def _open(api_url: str, headers: dict[str, str], query: str = "", **options: Any) -> connect:
    return connect(_url(api_url, query), additional_headers=headers, proxy=None, **options)


async def _message(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(120):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def _event(ws: ClientConnection) -> Event:
    """The next message, which must be a turn's event (not a refusal of a message)."""
    message = await _message(ws)
    assert "problem" not in message, message
    assert set(message) == {"type", "id", "data"}, message
    return Event(event=message["type"], id=message["id"], data=message["data"])


async def _turn(ws: ClientConnection) -> list[Event]:
    """One turn's events, up to its final one."""
    received = [await _event(ws)]
    while received[-1].event not in FINAL:
        received.append(await _event(ws))
    return received


async def _sse(
    api: httpx.AsyncClient, session: str, turn: int, headers: dict[str, str]
) -> list[Event]:
    route = f"/v1/conversation/{session}/turns/{turn}/stream"
    async with api.stream("GET", route, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        return [event async for event in events(response)]


async def test_two_turns_and_a_cancel_on_one_socket_come_in_order_with_the_sse_ids(
    api: httpx.AsyncClient, api_url: str, token: Callable[..., str]
) -> None:
    session, headers = _session(), _bearer(token)
    async with _open(api_url, headers) as ws:
        # The handshake's answer carries what every answer carries.
        accepted = ws.response.headers if ws.response else {}
        assert {"x-trace-id", "x-policy-version", "x-constitution-hash"} <= set(accepted)
        await ws.send(json.dumps({"type": "turn", "session_id": session, "message": LONG}))
        first = [await _event(ws)]
        while first[-1].event != "token":
            first.append(await _event(ws))
        # The second turn starts now (the workflow runs it after the first); its events
        # come after all of the first's.
        second_turn = {"type": "turn", "session_id": session, "message": "Name a colour."}
        await ws.send(json.dumps(second_turn))
        await ws.send(json.dumps({"type": "cancel", "session_id": session, "turn": 1}))
        first += await _turn(ws)
        second = await _turn(ws)

    assert first[0].event == "turn.accepted" and first[0].data["turn"] == 1
    assert first[-1].event == "turn.cancelled" and first[-1].data["status"] == "cancelled"
    ids_in_order(first, 1)
    assert [e.event for e in second][:2] == ["turn.accepted", "verdict"]
    assert second[0].data == {**second[0].data, "session_id": session, "turn": 2}
    assert second[-1].event == "turn.completed" and text(second) == second[-1].data["reply"]
    ids_in_order(second, 2)
    # The same events, with the same ids, as the turn's SSE stream gives.
    for turn, received in ((1, first), (2, second)):
        replay = await _sse(api, session, turn, headers)
        assert [(e.id, e.event, e.data) for e in replay] == [
            (e.id, e.event, e.data) for e in received
        ]
    transcript = (await api.get(f"/v1/conversation/{session}", headers=headers)).json()
    assert [t["status"] for t in transcript["turns"]] == ["cancelled", "completed"]


async def test_a_client_that_reconnects_resumes_without_gaps_or_repeats(
    api: httpx.AsyncClient, api_url: str, token: Callable[..., str]
) -> None:
    session, headers = _session(), _bearer(token)
    first: list[Event] = []
    async with _open(api_url, headers) as ws:
        body = {
            "type": "turn",
            "session_id": session,
            "message": "Write a short poem about the sea.",
        }
        await ws.send(json.dumps(body))
        while sum(e.event == "token" for e in first) < 3:
            first.append(await _event(ws))
    # The socket is gone mid-turn; the turn goes on. A new socket, authenticated the way a
    # browser must (the token as a subprotocol), resumes after the last id seen.
    offer = [Subprotocol("bearer"), Subprotocol(token("acme", "user"))]
    async with connect(_url(api_url), subprotocols=offer, proxy=None) as ws:
        assert ws.subprotocol == "bearer"
        resume = {"type": "resume", "session_id": session, "turn": 1, "last_event_id": first[-1].id}
        await ws.send(json.dumps(resume))
        rest = await _turn(ws)
    joined = first + rest
    ids_in_order(joined, 1)
    assert joined[-1].event == "turn.completed" and text(joined) == joined[-1].data["reply"]
    whole = await _sse(api, session, 1, headers)
    assert [(e.id, e.event) for e in joined] == [(e.id, e.event) for e in whole]


async def test_the_handshake_refuses_what_a_request_would_be_refused(
    api: httpx.AsyncClient, api_url: str, token: Callable[..., str]
) -> None:
    refusals = {
        "no token": (401, {}, "", None),
        "a bearer offer without its token": (401, {}, "", [Subprotocol("bearer")]),
        "a bad session id": (422, _bearer(token), "?session_id=no%20spaces", None),
        "no such session": (404, _bearer(token), f"?session_id={_session()}", None),
        "another policy": (409, {**_bearer(token), "X-Policy-Version": "0.0"}, "", None),
    }
    for name, (status, headers, query, offer) in refusals.items():
        with pytest.raises(InvalidStatus) as refused:
            async with _open(api_url, headers, query, subprotocols=offer):
                pass
        response = refused.value.response
        assert response.status_code == status, name
        assert response.headers["content-type"] == "application/problem+json", name
        problem = json.loads(response.body or b"{}")
        assert problem["status"] == status and problem["trace_id"] == response.headers["x-trace-id"]


async def test_another_tenants_or_users_session_is_refused_at_the_handshake_and_on_the_socket(
    api: httpx.AsyncClient, api_url: str, token: Callable[..., str]
) -> None:
    session, alice = _session(), _bearer(token, subject="alice")
    started = await api.post(
        "/v1/conversation/step", json={"session_id": session, "message": "Hi."}, headers=alice
    )
    assert started.status_code == 200, started.text
    # Another tenant's user and another user of the tenant: to both it does not exist.
    strangers = [_bearer(token, "globex", subject="alice"), _bearer(token, subject="bob")]
    status = 404
    for headers in strangers:
        with pytest.raises(InvalidStatus) as refused:
            async with _open(api_url, headers, f"?session_id={session}"):
                pass
        assert refused.value.response.status_code == status
        async with _open(api_url, headers) as ws:
            # Named in messages: an error each, and the socket stays open.
            for kind, extra in (("cancel", {}), ("resume", {"last_event_id": "1-0"})):
                body = {"type": kind, "session_id": session, "turn": 1, "ref": kind, **extra}
                await ws.send(json.dumps(body))
                error = await _message(ws)
                assert error["type"] == "error" and error["ref"] == kind, error
                assert error["problem"]["status"] == status, error
            await ws.send("not json")
            assert (await _message(ws))["problem"]["status"] == 400
            await ws.send(json.dumps({"type": "turn", "message": "", "ref": 7}))
            invalid = await _message(ws)
            assert invalid["ref"] == 7 and invalid["problem"]["code"] == "validation_error"
            assert invalid["problem"]["detail"].startswith("turn.message:"), invalid
            # Still open, and serving: a turn of their own (refused at input: no SLM call).
            await ws.send(json.dumps({"type": "turn", "message": "How do I build a pipe bomb?"}))
            assert [e.event for e in await _turn(ws)] == [
                "turn.accepted",
                "verdict",
                "turn.refused",
            ]
    # Nothing the strangers asked for happened to alice's session.
    view = (await api.get(f"/v1/conversation/{session}", headers=alice)).json()
    assert [t["status"] for t in view["turns"]] == ["completed"]


async def test_a_token_that_expires_while_the_socket_is_open_closes_it(
    api_url: str, token: Callable[..., str]
) -> None:
    async with _open(api_url, _bearer(token, ttl_seconds=1)) as ws:
        # Nothing is sent: the socket closes at its token's expiry (and the verifier's 5 s
        # of leeway) by itself.
        with pytest.raises(ConnectionClosedError) as closed:
            await _message(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "token expired" in closed.value.rcvd.reason


async def test_a_message_larger_than_a_request_body_closes_the_socket(
    api_url: str, token: Callable[..., str]
) -> None:
    async with _open(api_url, _bearer(token)) as ws:
        await ws.send(json.dumps({"type": "turn", "message": "x" * 70_000}))
        with pytest.raises(ConnectionClosedError) as closed:
            await _message(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # too big


async def test_a_socket_named_for_a_session_sends_its_turns_there(
    api: httpx.AsyncClient, api_url: str, token: Callable[..., str]
) -> None:
    session, headers = _session(), _bearer(token)
    started = await api.post(
        "/v1/conversation/step", json={"session_id": session, "message": "Hi."}, headers=headers
    )
    assert started.status_code == 200, started.text
    async with _open(api_url, headers, f"?session_id={session}") as ws:
        await ws.send(json.dumps({"type": "turn", "message": "Name a fruit."}))
        received = await _turn(ws)
    assert received[0].data["session_id"] == session and received[0].data["turn"] == 2
    assert received[-1].event == "turn.completed"


async def test_a_reader_that_reads_nothing_does_not_hold_the_turn_back(
    api: httpx.AsyncClient, api_url: str, token: Callable[..., str]
) -> None:
    session, headers = _session(), _bearer(token)
    # max_queue=1: the client library stops taking frames off the connection after one, so
    # the server's sends meet a reader that does not read.
    async with _open(api_url, headers, max_queue=1) as ws:
        body = {
            "type": "turn",
            "session_id": session,
            "message": "Write a short poem about the sea.",
        }
        await ws.send(json.dumps(body))
        async with asyncio.timeout(90):
            while True:
                view = await api.get(f"/v1/conversation/{session}", headers=headers)
                turns = view.json().get("turns", []) if view.status_code == 200 else []
                if turns and turns[0]["status"] == "completed":
                    break
                await asyncio.sleep(0.2)
        # Only now is anything read: every event is still there, in order.
        received = await _turn(ws)
    assert received[-1].event == "turn.completed"
    assert text(received) == turns[0]["reply"] == received[-1].data["reply"]
    ids_in_order(received, 1)
