"""The floor: what Temporal alone costs for a turn's shape, on this machine, in the same run.

A minimal workflow per request, started with update-with-start (as the API starts a
session); its update runs one activity on a second task queue that sends the direct path's
chat completion to the SLM server. No API, moderation, events or search attributes: its
latency minus the SLM call is Temporal's own share of a turn, which the product's
orchestration overhead can approach but not go under. Asked for a stream, the activity
notes when the first token came, the floor of a streamed turn's time to first token.

`python -m bench.floor --address A --namespace N --chat-url U` serves both queues in a
process of its own, so that what the floor's worker spends can be read apart (`bench.cost`).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from temporalio import activity, workflow
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from bench.chat import first_token
from bench.phases import TurnTrace

WORKFLOW_QUEUE = "bench-floor"
ACTIVITY_QUEUE = "bench-floor-slm"


@dataclass
class Reply:
    completion_tokens: int
    slm_seconds: float
    #: A streamed completion: when its first token came (`time.perf_counter`, this process).
    first_token_at: float = 0.0


class FloorActivities:
    def __init__(self, http: httpx.AsyncClient, chat_url: str) -> None:
        self._http, self._chat_url = http, chat_url

    @activity.defn(name="bench.complete")
    async def complete(self, body: dict[str, Any]) -> Reply:
        started = time.perf_counter()
        if body.get("stream"):
            first, tokens = await first_token(self._http, self._chat_url, body)
            return Reply(tokens, time.perf_counter() - started, first)
        response = await self._http.post(self._chat_url, json=body)
        response.raise_for_status()
        tokens = int(response.json()["usage"]["completion_tokens"])
        return Reply(tokens, time.perf_counter() - started)


async def _completed(body: dict[str, Any]) -> Reply:
    """The SLM call, an activity on the floor's second task queue (workflow code)."""
    reply: Reply = await workflow.execute_activity(
        "bench.complete",
        body,
        task_queue=ACTIVITY_QUEUE,
        start_to_close_timeout=timedelta(seconds=120),
        result_type=Reply,
    )
    return reply


@workflow.defn(sandboxed=False)
class FloorWorkflow:
    def __init__(self) -> None:
        self._answered = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self._answered)
        await workflow.wait_condition(workflow.all_handlers_finished)

    @workflow.update
    async def complete(self, body: dict[str, Any]) -> Reply:
        reply = await _completed(body)
        self._answered = True
        return reply


@workflow.defn(sandboxed=False)
class FloorSessionWorkflow:
    """A session's shape: one workflow that takes turn after turn, each an update."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.update
    async def complete(self, body: dict[str, Any]) -> Reply:
        return await _completed(body)


@asynccontextmanager
async def serving(client: Client, http: httpx.AsyncClient, chat_url: str) -> AsyncIterator[None]:
    """Workers for both floor queues, in this process, for as long as the block runs."""
    activities = FloorActivities(http, chat_url)
    workflows = Worker(
        client, task_queue=WORKFLOW_QUEUE, workflows=[FloorWorkflow, FloorSessionWorkflow]
    )
    slm = Worker(client, task_queue=ACTIVITY_QUEUE, activities=[activities.complete])
    async with workflows, slm:
        yield


async def complete(client: Client, body: dict[str, Any]) -> tuple[Reply, TurnTrace]:
    """The reply, and what finds its phases in the workflow's history (`bench.phases`)."""
    workflow_id = f"bench-floor-{uuid.uuid4().hex}"
    start = WithStartWorkflowOperation(
        FloorWorkflow.run,
        id=workflow_id,
        task_queue=WORKFLOW_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    sent = time.time()
    reply: Reply = await client.execute_update_with_start_workflow(
        FloorWorkflow.complete, body, start_workflow_operation=start
    )
    return reply, TurnTrace(workflow_id, None, sent, time.time(), reply.slm_seconds)


async def session_turn(client: Client, session: str, body: dict[str, Any]) -> Reply:
    """One turn of the floor session `session`, started by it when it is new."""
    start = WithStartWorkflowOperation(
        FloorSessionWorkflow.run,
        id=session,
        task_queue=WORKFLOW_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    reply: Reply = await client.execute_update_with_start_workflow(
        FloorSessionWorkflow.complete, body, start_workflow_operation=start
    )
    return reply


async def _serve(address: str, namespace: str, chat_url: str) -> None:
    client = await Client.connect(address, namespace=namespace)
    async with httpx.AsyncClient(timeout=120) as http, serving(client, http, chat_url):
        print("ready", flush=True)
        await asyncio.Event().wait()  # until the bench stops this process


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--address", required=True, help="Temporal's host:port")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--chat-url", required=True, help="the SLM's chat completions URL")
    args = parser.parse_args()
    asyncio.run(_serve(args.address, args.namespace, args.chat_url))


if __name__ == "__main__":
    main()
