"""Policy headers (docs/interface.md, section 4): tell every client which policy is in force.

An authenticated request carries its tenant's (api/deps.py, which also refuses a client
that expects another one); any other answer the floor's.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.policy_registry import ActivePolicy


class PolicyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        active: ActivePolicy = scope["app"].state.active_policy  # opened in the lifespan
        # Probes and documents answer from the process alone: a slow Redis must not fail
        # liveness. They carry the last known policy; /v1 requests read the current one.
        floor = await active.identity() if scope["path"].startswith("/v1/") else active.last_known()
        state = scope.setdefault("state", {})  # where api/deps.py leaves the tenant's

        async def send_with_policy(message: Message) -> None:
            # An HTTP answer, a WebSocket handshake's refusal, or its acceptance.
            identity = state.get("policy_identity", floor)
            version, digest = identity["policy_version"], identity["constitution_hash"]
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

        await self.app(scope, receive, send_with_policy)
