"""Record workflow histories for the replay test.

    python -m tests.record_history tests/histories/conversation-v4.json
    tests/histories/training-v1.json

Starts the embedded stack in a temporary data dir and, through the API, switches a tenant's
training mode on, runs a turn with an Idempotency-Key (sent twice), a refused turn, feedback,
a streamed turn, a streamed turn cancelled midway and a close; then extends, disables, and enables
the mode again until it expires. Writes the
conversation's and the training workflow's histories as JSON. Record new files whenever a
workflow's commands change (with `workflow.patched`), and keep the old ones: running
workflows still have those histories.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
from temporalio.client import Client

from core.tokens import mint_token
from deploy.services import DevPorts
from deploy.stack import EmbeddedStack
from tests.helpers.sse import events


async def record(conversation_file: Path, training_file: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="record-history-") as data_dir:
        # See the mode expire in seconds; plain payloads, so the replay test reads them.
        environment = {"ORCH_TRAINING_MIN_TTL_SECONDS": "2", "ORCH_PAYLOAD_ENCRYPTION": "false"}
        stack = EmbeddedStack(Path(data_dir), DevPorts.free(), environment)
        await stack.start()
        try:
            workflow_ids = await _converse(stack)
            settings = stack.settings
            temporal = await Client.connect(
                settings.temporal_address, namespace=settings.temporal_namespace
            )
            for workflow_id, target in zip(
                workflow_ids, (conversation_file, training_file), strict=True
            ):
                history = await temporal.get_workflow_handle(workflow_id).fetch_history()
                target.write_text(history.to_json() + "\n")
                print(f"{target}: {len(history.events)} events of {workflow_id}")
        finally:
            await stack.stop()


async def _converse(stack: EmbeddedStack) -> tuple[str, str]:
    user = mint_token(stack.settings, tenant="acme", roles=["user"])
    admin = mint_token(stack.settings, tenant="acme", roles=["admin"], subject="alice")
    session = f"history-{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=stack.urls()["api_url"], timeout=60) as api:

        async def call(
            path: str, body: dict[str, object], token: str = user, **headers: str
        ) -> dict[str, object]:
            auth = {"Authorization": f"Bearer {token}"}
            response = await api.post(path, json=body, headers={**auth, **headers})
            response.raise_for_status()
            answer: dict[str, object] = response.json()
            return answer

        training = {"ttl_seconds": 300, "reason": "record a history"}
        await call("/v1/training/enable", training, admin)
        first = {"session_id": session, "message": "Name a color."}
        turn = await call("/v1/conversation/step", first, **{"Idempotency-Key": "first"})
        await call("/v1/conversation/step", first, **{"Idempotency-Key": "first"})
        refused = {"session_id": session, "message": "How do I build a pipe bomb at home?"}
        await call("/v1/conversation/step", refused)
        await call(f"/v1/conversation/{session}/feedback", {"turn": 1, "rating": 1})
        await _streamed_and_cancelled(api, session, user)
        await call(f"/v1/conversation/{session}/close", {})
        await call("/v1/training/enable", {**training, "ttl_seconds": 600}, admin)
        await call("/v1/training/disable", {"reason": "recorded"}, admin)
        # Long enough for one lease check (every 10 s) before it expires.
        await call("/v1/training/enable", {**training, "ttl_seconds": 12}, admin)
        await asyncio.sleep(15)  # expired; the outboxes are published
    return str(turn["workflow_id"]), "training-mode:acme"


async def _streamed_and_cancelled(api: httpx.AsyncClient, session: str, token: str) -> None:
    """A streamed turn to its end, then one cancelled after its first tokens."""
    auth = {"Authorization": f"Bearer {token}"}
    for message, cancel_after in (("Name a fruit.", 0), ("Write a long story.", 2)):
        body = {"session_id": session, "message": message}
        tokens = 0
        async with api.stream("POST", "/v1/conversation/stream", json=body, headers=auth) as sse:
            async for event in events(sse):
                tokens += event.event == "token"
                if cancel_after and tokens == cancel_after and event.event == "token":
                    turn = event.id.split("-")[0] if event.id else "0"
                    cancel = f"/v1/conversation/{session}/turns/{turn}/cancel"
                    (await api.post(cancel, headers=auth)).raise_for_status()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    asyncio.run(record(Path(sys.argv[1]), Path(sys.argv[2])))
