"""Log lines join their turn: JSON from the API and the worker, with the turn's trace id,
the span id of what was running, the session and the tenant; never the message or the
reply (docs/operations.md, Logs)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from deploy.stack import EmbeddedStack

SPAN_ID = re.compile(r"^[0-9a-f]{16}$")


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a service's log, each of which must be one JSON object."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_both_processes_log_a_turn_joined_to_its_trace_without_its_text(
    stack: EmbeddedStack, api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    session = f"s-{uuid.uuid4().hex[:12]}"
    canary = f"zebracanary{uuid.uuid4().hex[:6]}"
    response = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": f"Say the word {canary} back to me."},
        headers={"Authorization": f"Bearer {token('acme', 'user')}"},
    )
    assert response.status_code == 200, response.text
    trace_id, reply = response.headers["x-trace-id"], response.json()["reply"]
    logs = stack.data_dir / "logs"
    worker_lines: list[dict[str, Any]] = []
    api_lines: list[dict[str, Any]] = []
    # Each process writes its line as its part ends: the API's once the response is sent,
    # the worker's as the turn ends, either a moment after the client has the reply.
    for _ in range(50):
        worker_lines = [r for r in _lines(logs / "worker.log") if r.get("trace_id") == trace_id]
        api_lines = [r for r in _lines(logs / "api.log") if r.get("trace_id") == trace_id]
        if any(r["message"] == "turn 1 completed" for r in worker_lines) and any(
            r["message"].startswith("POST /v1/conversation/step") for r in api_lines
        ):
            break
        await asyncio.sleep(0.1)

    request_line = next(
        r for r in api_lines if r["message"].startswith("POST /v1/conversation/step")
    )
    assert request_line["service"] == "orchestrator-api"
    assert SPAN_ID.match(request_line["span_id"])
    assert (request_line["session_id"], request_line["tenant"]) == (session, "acme")

    turn_line = next(r for r in worker_lines if r["message"] == "turn 1 completed")
    assert turn_line["service"] == "orchestrator-worker"
    assert (turn_line["session_id"], turn_line["tenant"], turn_line["turn"]) == (session, "acme", 1)
    assert turn_line["decision"] == "allow" and SPAN_ID.match(turn_line["span_id"])

    for service in ("api", "worker", "slm"):
        text = (logs / f"{service}.log").read_text()
        assert canary not in text, f"{service}.log holds the message"
    for service in ("api", "worker"):
        assert not reply.strip() or reply.strip() not in (logs / f"{service}.log").read_text()


async def test_content_is_logged_only_when_asked(
    stack: EmbeddedStack, api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    original = dict(stack.environment)
    await stack.stop(("worker",))
    stack.environment = {**original, "ORCH_LOG_CONTENT": "true"}
    await stack.start(("worker",))
    try:
        canary = f"zebracanary{uuid.uuid4().hex[:6]}"
        response = await api.post(
            "/v1/conversation/step",
            json={"session_id": f"s-{uuid.uuid4().hex[:12]}", "message": f"Spell {canary}."},
            headers={"Authorization": f"Bearer {token('acme', 'user')}"},
        )
        assert response.status_code == 200, response.text
        trace_id, reply = response.headers["x-trace-id"], response.json()["reply"]
        lines = [
            r
            for r in _lines(stack.data_dir / "logs" / "worker.log")
            if r.get("trace_id") == trace_id and r["message"] == "slm reply"
        ]
        assert [(r["user_message"], r["reply"]) for r in lines] == [(f"Spell {canary}.", reply)]
    finally:
        await stack.stop(("worker",))
        stack.environment = original
        await stack.start(("worker",))
