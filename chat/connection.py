"""The chat's connection to the API: the conversation WebSocket for turns (and their
cancels and resumes), HTTP for the rest (who the token is, the transcript, feedback).

Synchronous on purpose: the terminal waits on one thing at a time, and Ctrl-C reaches the
main thread between two short waits (`receive` gives up after `timeout`).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import ClientConnection, connect

from chat.target import ChatError, Target


class ApiError(Exception):
    """The API refused a request; `problem` is its problem+json document."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(problem.get("detail") or problem.get("title") or "refused")
        self.problem = problem
        self.status = int(problem.get("status") or 0)


class ConnectionLost(Exception):
    """The WebSocket closed; a new one can resume where it stopped."""


class ChatApi:
    def __init__(self, target: Target) -> None:
        self.api_url = target.api_url
        self._token = target.token
        self._http = httpx.Client(
            base_url=target.api_url,
            headers={"Authorization": f"Bearer {target.token}"},
            timeout=30,
        )
        self._socket: ClientConnection | None = None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._http.close()

    def whoami(self) -> dict[str, Any]:
        return self._call("GET", "/v1/whoami")

    def transcript(self, session_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/conversation/{session_id}", params={"limit": 200})

    def feedback(self, session_id: str, turn: int, rating: int, comment: str) -> dict[str, Any]:
        body = {"turn": turn, "rating": rating, "comment": comment}
        return self._call("POST", f"/v1/conversation/{session_id}/feedback", json=body)

    def send(self, message: dict[str, Any]) -> None:
        """Send a message on the WebSocket, opening it first if needed (again, once, if it
        closed since: a message that met a closed socket was not sent)."""
        for _ in range(2):
            try:
                self._open().send(json.dumps(message))
                return
            except ConnectionClosed:
                self._socket = None
        raise ConnectionLost()

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The socket's next message, or None if none came within `timeout` seconds."""
        try:
            text = self._open().recv(timeout=timeout)
        except TimeoutError:
            return None
        except ConnectionClosed:
            self._socket = None
            raise ConnectionLost() from None
        message: dict[str, Any] = json.loads(text)
        return message

    def _open(self) -> ClientConnection:
        if self._socket is None:
            url = self.api_url.replace("http", "ws", 1) + "/v1/conversation/ws"
            headers = {"Authorization": f"Bearer {self._token}"}
            try:
                self._socket = connect(url, additional_headers=headers, proxy=None)
            except InvalidStatus as refused:
                raise ApiError(
                    _problem(refused.response.status_code, refused.response.body)
                ) from None
            except (OSError, WebSocketException) as error:
                raise ChatError(f"cannot open the WebSocket at {url}: {error}") from None
        return self._socket

    def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **options)
        except httpx.HTTPError as error:
            raise ChatError(f"cannot reach the API at {self.api_url}: {error}") from None
        if response.status_code >= 400:
            raise ApiError(_problem(response.status_code, response.content))
        body: dict[str, Any] = response.json()
        return body


def _problem(status: int, body: bytes | bytearray | None) -> dict[str, Any]:
    try:
        problem = json.loads(body or b"")
    except ValueError:
        problem = None
    if isinstance(problem, dict):
        return problem
    return {"status": status, "title": f"HTTP {status}", "detail": (body or b"").decode()[:200]}
