"""Policy headers (docs/interface.md, section 4): refuse a client that expects another
policy, and tell every client which policy is in force.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import from_error
from core.errors import PolicyMismatch
from core.policy_registry import ActivePolicy


class PolicyMiddleware:
    """A mismatch on a /v1 request is a 409 before any route runs, so nothing starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        active: ActivePolicy = scope["app"].state.active_policy  # opened in the lifespan
        # Probes and documents answer from the process alone: a slow Redis must not fail
        # liveness. They carry the last known policy; /v1 requests read the current one.
        v1 = scope["path"].startswith("/v1/")
        identity = await active.identity() if v1 else active.last_known()
        version, digest = identity["policy_version"], identity["constitution_hash"]

        async def send_with_policy(message: Message) -> None:
            # An HTTP answer, a WebSocket handshake's refusal, or its acceptance.
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                headers = MutableHeaders(scope=message)
                headers["X-Policy-Version"] = version
                headers["X-Constitution-Hash"] = digest
            elif message["type"] == "websocket.accept":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-policy-version", version.encode()),
                    (b"x-constitution-hash", digest.encode()),
                ]
            await send(message)

        asked = Headers(scope=scope)
        wanted_version = asked.get("x-policy-version")
        wanted_hash = asked.get("x-constitution-hash")
        mismatch = (wanted_version is not None and wanted_version != version) or (
            wanted_hash is not None and wanted_hash.lower() != digest
        )
        if mismatch and v1:
            scope.setdefault("state", {})["decision"] = "policy_mismatch"
            error = PolicyMismatch(
                f"The active policy is {version} ({digest}); refresh your policy and retry.",
                policy_version=version,
                constitution_hash=digest,
            )
            await from_error(error, scope["path"])(scope, receive, send_with_policy)
            return
        await self.app(scope, receive, send_with_policy)
