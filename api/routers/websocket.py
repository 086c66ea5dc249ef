"""The conversation WebSocket, `GET /v1/conversation/ws` (docs/api.md, WebSocket): turns,
cancels and resumes in, the turns' events out, both ways on one socket.

The same turns and events as the SSE routes (api/streaming/start.py): a turn starts as soon as
its message is read, as a stream request would start it (the workflow runs a session's
turns one at a time, in arrival order); the streams are relayed one after the other, in the
order they were asked for, so the events of two turns never interleave. At most
`MAX_WAITING` streams wait behind the one being relayed; the relay reads the turn's Redis
Stream only as fast as the socket takes its events, so a slow reader holds nothing in
memory beyond one read and the transport's buffer, and never slows the SLM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Iterator

from fastapi import APIRouter, WebSocket
from opentelemetry import context, trace
from redis.exceptions import RedisError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api.auth import LEEWAY_SECONDS, Principal
from api.deps import authenticate
from api.schemas.conversations import SESSION_ID_PATTERN
from api.schemas.websocket import (
    CancelMessage,
    ClientMessage,
    MessageError,
    ResumeMessage,
    TurnMessage,
    error_text,
    event_text,
    parse,
)
from api.session_workflow import STATE_ONLY, cancel_session_turn, session_view
from api.socket_limits import Lifetime, OpenSockets
from api.streaming.start import Source, find_stream, relayed, start_streamed_turn
from core.clients import Clients
from core.errors import (
    DependencyUnavailable,
    InvalidRequest,
    OrchestratorError,
    RateLimited,
    Unauthenticated,
)
from core.telemetry import current_trace_id, trace_id_var

router = APIRouter()
log = logging.getLogger("orchestrator.api")
_tracer = trace.get_tracer("orchestrator.api")
#: The subprotocol a browser offers, followed by its token, as it cannot set headers.
BEARER_SUBPROTOCOL = "bearer"
#: Streams (turns, resumes) one socket may have waiting behind the one being relayed.
MAX_WAITING = 8
#: Close code of a socket whose token no longer passes (RFC 6455: policy violation).
CLOSE_UNAUTHENTICATED = 1008
CLOSE_INTERNAL_ERROR = 1011


@router.websocket("/v1/conversation/ws")
async def conversation_socket(websocket: WebSocket) -> None:
    # A refusal before `accept` is an HTTP answer to the handshake (the problem handlers send
    # it as the WebSocket denial response): 401, 403, 404, 422, 429 or 503.
    authorization, subprotocol = _credentials(websocket)
    principal = await _user(websocket, authorization)
    session_id = websocket.query_params.get("session_id")
    if session_id is not None:
        if not _valid_session_id(session_id):
            raise InvalidRequest(f"query.session_id: must match {SESSION_ID_PATTERN}.")
        await session_view(_clients(websocket), principal, session_id, STATE_ONLY)
    sockets: OpenSockets = websocket.app.state.sockets
    with sockets.held(principal):  # past a cap: 429 at the handshake
        await websocket.accept(subprotocol=subprotocol)
        settings = _clients(websocket).settings
        # As long as the token passes verification: its `exp` and the verifier's leeway.
        expires = principal.expires_at + LEEWAY_SECONDS if principal.expires_at else None
        lifetime = Lifetime(expires, settings.ws_idle_timeout_seconds)
        await _Socket(websocket, authorization, session_id, lifetime).run()


def _credentials(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The `Authorization` value, from the header or the offered subprotocols
    `bearer, <token>`; and the subprotocol to accept (the offer must be answered)."""
    offered = list(websocket.scope.get("subprotocols", []))
    if BEARER_SUBPROTOCOL not in offered:
        return websocket.headers.get("authorization"), None
    at = offered.index(BEARER_SUBPROTOCOL)
    if at + 1 >= len(offered):
        raise Unauthenticated(
            "Offer the subprotocols 'bearer' and then your token, e.g. "
            "new WebSocket(url, ['bearer', token])."
        )
    return websocket.headers.get("authorization") or f"Bearer {offered[at + 1]}", "bearer"


async def _user(websocket: WebSocket, authorization: str | None) -> Principal:
    principal = await authenticate(websocket, authorization)
    principal.require("user")
    return principal


def _valid_session_id(session_id: str) -> bool:
    return re.fullmatch(SESSION_ID_PATTERN, session_id) is not None


def _clients(websocket: WebSocket) -> Clients:
    clients: Clients = websocket.app.state.clients
    return clients


class _Socket:
    """One accepted socket: a reader of the client's messages, a sender of the streams."""

    def __init__(
        self,
        websocket: WebSocket,
        authorization: str | None,
        session: str | None,
        lifetime: Lifetime,
    ):
        self._ws = websocket
        self._lifetime = lifetime
        self._authorization = authorization
        self._session_id = session
        self._state = websocket.app.state
        self._waiting: asyncio.Queue[Source] = asyncio.Queue(MAX_WAITING)
        self._sending = asyncio.Lock()  # one message at a time, whole

    async def run(self) -> None:
        reader = asyncio.create_task(self._read_messages())
        sender = asyncio.create_task(self._send_streams())
        watch = asyncio.create_task(self._close_at_end_of_life())
        try:
            await asyncio.wait({reader, sender, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, sender, watch):
                task.cancel()
            ended = await asyncio.gather(reader, sender, watch, return_exceptions=True)
            while not self._waiting.empty():  # never relayed: their limits go back
                await self._waiting.get_nowait().release()
        # The sender ends only by an error: the client gone (nothing to do), or a fault.
        gone = (WebSocketDisconnect, OSError)
        faults = [e for e in ended if isinstance(e, Exception) and not isinstance(e, gone)]
        if faults:
            log.error("conversation socket failed", exc_info=faults[0])
            if self._ws.application_state == WebSocketState.CONNECTED:
                with contextlib.suppress(*gone, RuntimeError):
                    await self._ws.close(CLOSE_INTERNAL_ERROR, "internal error; resume the turn")

    async def _close_at_end_of_life(self) -> None:
        """Close the socket when its token expires or it has been idle too long."""
        code, reason = await self._lifetime.ended()
        async with self._sending:
            await self._ws.close(code, reason)

    async def _read_messages(self) -> None:
        while True:
            try:
                received = await self._ws.receive()
            except WebSocketDisconnect:
                return
            if received["type"] == "websocket.disconnect":
                return
            self._lifetime.touch()
            with _own_trace():
                if not await self._answer(received.get("text")):
                    await self._ws.close(CLOSE_UNAUTHENTICATED, "token refused; reconnect")
                    return

    async def _answer(self, text: str | None) -> bool:
        """Act on one message, or send the error it caused; False: the socket must close."""
        ref: str | int | None = None
        try:
            message = parse(text)
            ref = message.ref
            await self._handle(message)
        except MessageError as refused:
            await self._error(refused.error, refused.ref)
        except OrchestratorError as error:
            await self._error(error, ref)
            # A token that expired or was revoked: nothing more can be done on this socket.
            return not isinstance(error, Unauthenticated)
        except RedisError:
            await self._error(
                DependencyUnavailable("Redis is unavailable; retry in a moment."), ref
            )
        except Exception:  # a fault of ours: this message's answer, as a route's would be
            log.exception("a conversation socket's message failed")
            fault = OrchestratorError(
                "The server failed to handle this message; report the trace id."
            )
            await self._error(fault, ref)
        return True

    async def _handle(self, message: ClientMessage) -> None:
        """Start, cancel or find what the message asks for; raise its refusal."""
        # Every message is a request: the token again (it may have expired), the rate.
        principal = await _user(self._ws, self._authorization)
        clients = _clients(self._ws)
        if isinstance(message, CancelMessage):
            # Its outcome is the turn's final event, on the socket that relays the turn.
            await cancel_session_turn(clients, principal, message.session_id, message.turn)
            return
        if self._waiting.full():
            raise RateLimited(
                f"{MAX_WAITING} streams are waiting on this socket behind the one it relays; "
                "send more once one has ended.",
                retry_after_seconds=1,
            )
        if isinstance(message, TurnMessage):
            if message.session_id is None and self._session_id is not None:
                message = message.model_copy(update={"session_id": self._session_id})
            state = self._state
            source = await start_streamed_turn(
                message,
                principal,
                clients,
                state.settings,
                state.policy,
                state.limits,
                message.idempotency_key,
            )
        else:
            assert isinstance(message, ResumeMessage)
            source = await find_stream(
                message.session_id,
                message.turn,
                principal,
                clients,
                self._state.limits,
                message.last_event_id,
            )
        self._waiting.put_nowait(source)  # room checked above; only this task puts

    async def _send_streams(self) -> None:
        clients = _clients(self._ws)
        while True:
            source = await self._waiting.get()
            last_id: str | None = None
            async with contextlib.aclosing(relayed(source, clients)) as events:
                async for event in events:
                    await self._send(event_text(event))
                    last_id = event.id
            if source.broken_off:
                await self._error(
                    DependencyUnavailable(
                        "The relay of this turn's events broke off (Redis unavailable, or no "
                        "event for 5 minutes); the turn goes on: resume it after the last id "
                        "you saw.",
                        last_event_id=last_id,
                    ),
                    None,
                )

    async def _error(self, error: OrchestratorError, ref: str | int | None) -> None:
        trace_id = current_trace_id() or trace_id_var.get()
        await self._send(error_text(error.problem(trace_id), ref))

    async def _send(self, text: str) -> None:
        async with self._sending:
            await self._ws.send_text(text)
        self._lifetime.touch()


@contextlib.contextmanager
def _own_trace() -> Iterator[None]:
    """Each message its own trace (a turn's trace id is in its events), linked to the
    socket's span; errors it causes quote it."""
    link = trace.Link(trace.get_current_span().get_span_context())
    with _tracer.start_as_current_span(
        "WEBSOCKET message", context=context.Context(), links=[link], kind=trace.SpanKind.SERVER
    ) as span:
        # Without a tracer provider the span is a no-op one: then a trace id of its own.
        valid = span.get_span_context().is_valid
        token = trace_id_var.set(current_trace_id() if valid else uuid.uuid4().hex)
        try:
            yield
        finally:
            trace_id_var.reset(token)
