"""What a session keeps is capped by bytes, not by count: the longest turns the API allows,
many of them, never push a payload past Temporal's limit
(workflows/conversation/session_record.py)."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict

import httpx
import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.converter import WorkflowSerializationContext
from temporalio.exceptions import ApplicationError

from core.settings import Settings
from deploy.stack import EmbeddedStack
from tests.helpers.direct_turns import step_directly
from tests.helpers.kafka_records import records_for_key
from workflows.conversation.session_record import (
    FEEDBACK_BYTES_PER_TURN,
    OUTBOX_CARRY_BYTES,
    PAGE_BYTES,
)
from workflows.conversation.types import (
    ConversationState,
    Feedback,
    TranscriptRequest,
    TurnRequest,
)
from workflows.conversation.workflow import ConversationWorkflow

#: The longest message the API takes, in characters that JSON stores as 12 bytes each.
LONGEST = "\U0001d538" * 8000
#: Metadata of the 4 KiB the API allows.
FULL_METADATA = {"note": "m" * 4000}


async def test_a_session_of_the_longest_turns_keeps_working_across_continue_as_new(
    temporal: Client, settings: Settings, api_url: str, token: Callable[..., str]
) -> None:
    session = f"long-{uuid.uuid4().hex[:10]}"
    turns = 24  # about 2.3 MB of messages and metadata: more than one payload may hold
    runs: set[str] = set()
    for number in range(1, turns + 1):
        result = await step_directly(
            temporal,
            settings,
            session,
            TurnRequest(message=LONGEST, metadata=FULL_METADATA, idempotency_key=f"k{number}"),
            max_reply_tokens=8,
            turns_per_run=2,
        )
        assert result.turn == number and result.status in ("completed", "refused"), result
        runs.add(result.run_id)
    headers = {"Authorization": f"Bearer {token('acme', 'user')}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as api:
        transcript = await api.get(f"/v1/conversation/{session}?limit=200", headers=headers)
        assert transcript.status_code == 200, transcript.text
        body = transcript.json()
        assert body["turn_count"] == turns
        kept = body["turns"]
        # The latest turns, as many as fit, and the count of those no longer kept.
        assert kept and [t["turn"] for t in kept] == list(range(turns - len(kept) + 1, turns + 1))
        assert body["earlier_turns"] + len(kept) <= turns
        assert len(transcript.content) < PAGE_BYTES  # JSON here, without the escapes
        after = await api.post(
            "/v1/conversation/step",
            json={"session_id": session, "message": "Hello again."},
            headers=headers,
        )
        assert after.status_code == 200, after.text
        assert after.json()["turn"] == turns + 1
    # It continued as new after every two turns, or three when the next came in while the
    # run published its events: turns sent back to back never keep one run going.
    assert len(runs) >= turns // 3


async def test_a_long_broker_outage_holds_new_turns_at_a_bound_and_loses_no_event(
    stack: EmbeddedStack, api_url: str, token: Callable[..., str], settings: Settings
) -> None:
    session = f"backlog-{uuid.uuid4().hex[:10]}"
    headers = {"Authorization": f"Bearer {token('acme', 'user')}"}
    body = {"session_id": session, "message": LONGEST, "metadata": FULL_METADATA}
    async with httpx.AsyncClient(base_url=api_url, timeout=120) as api:
        await stack.stop(("kafka",))
        try:
            answers = []
            for _ in range(12):  # each turn's event is about 100 KB
                answers.append(await api.post("/v1/conversation/step", json=body, headers=headers))
                if answers[-1].status_code != 200:
                    break
            held = answers[-1]
            assert held.status_code == 503, held.text
            assert held.json()["code"] == "events_backlog" and held.json()["dependency"] == "kafka"
            assert "Retry later" in held.json()["detail"]
            feedback = await api.post(
                f"/v1/conversation/{session}/feedback",
                json={"turn": 1, "rating": 1},
                headers=headers,
            )
            assert feedback.status_code == 503 and feedback.json()["code"] == "events_backlog"
            taken = len(answers) - 1
            assert 4 <= taken < 12
        finally:
            await stack.start(("kafka",))
        events = await records_for_key(
            settings.kafka_bootstrap,
            settings.conversation_events_topic,
            session,
            lambda found: len(found) >= taken,
            timeout=180,
        )
        assert sorted(e["data"]["turn"] for e in events) == list(range(1, taken + 1))
        # Published, the session takes turns again.
        again = await api.post("/v1/conversation/step", json=body, headers=headers)
        assert again.status_code == 200 and again.json()["turn"] == taken + 1, again.text


async def test_large_turns_admitted_together_in_an_outage_are_never_carried_past_the_cap(
    stack: EmbeddedStack, temporal: Client, settings: Settings
) -> None:
    """Ten clients keep ten of the largest turns in flight while the broker is away: all are
    admitted before the first one's event counts against the backlog, so the outbox grows
    well past the point where new turns are refused. The run due to end does not carry it
    whole: it keeps publishing until what is left fits, then continues as new."""
    session = f"burst-{uuid.uuid4().hex[:10]}"
    numbers = itertools.count(1)
    taken: list[int] = []

    async def client() -> None:  # sends turns until the session holds them back
        while True:
            number = next(numbers)
            try:
                result = await step_directly(
                    temporal,
                    settings,
                    session,
                    TurnRequest(
                        message=LONGEST, metadata=FULL_METADATA, idempotency_key=f"k{number}"
                    ),
                    max_reply_tokens=8,
                    turns_per_run=2,
                    publish_give_up_seconds=2,
                )
            except WorkflowUpdateFailedError as refused:
                assert isinstance(refused.cause, ApplicationError), refused.cause
                assert refused.cause.type == "events_backlog", refused.cause
                return
            taken.append(result.turn)

    handle = temporal.get_workflow_handle(f"conversation:acme:{session}")
    await stack.stop(("kafka",))
    try:
        await asyncio.gather(*(client() for _ in range(10)))
        backlog = (await handle.query(ConversationWorkflow.view)).backlog_bytes
        assert backlog > OUTBOX_CARRY_BYTES, backlog  # what the bound is for
        await asyncio.sleep(20)  # publishing gives up every 2 s: the run would end now
    finally:
        await stack.start(("kafka",))
    events = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: len(found) >= len(taken),
        timeout=180,
    )
    assert (
        sorted(e["data"]["turn"] for e in events) == sorted(taken) == list(range(1, len(taken) + 1))
    )
    after = await step_directly(temporal, settings, session, TurnRequest(message="Hello again."))
    assert after.turn == len(taken) + 1
    carried = await _carried_outboxes(temporal, handle.id)
    assert max(carried) <= OUTBOX_CARRY_BYTES


async def _carried_outboxes(temporal: Client, workflow_id: str) -> list[int]:
    """The bytes of the outbox each continue-as-new of `workflow_id` carried."""
    converter = temporal.data_converter.with_context(
        WorkflowSerializationContext(temporal.namespace, workflow_id)
    )
    sizes = []
    async for run in temporal.list_workflows(f'WorkflowId = "{workflow_id}"'):
        history = temporal.get_workflow_handle(workflow_id, run_id=run.run_id)
        async for event in history.fetch_history_events():
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                carried = event.workflow_execution_continued_as_new_event_attributes.input
                [state] = await converter.decode(carried.payloads, [ConversationState])
                outbox = converter.payload_converter.to_payloads([state.outbox])[0]
                sizes.append(len(outbox.data))
    assert sizes, "no run of the session continued as new"
    return sizes


async def test_feedback_kept_with_a_turn_is_capped_and_every_one_is_published(
    temporal: Client, settings: Settings
) -> None:
    session = f"fb-{uuid.uuid4().hex[:10]}"
    await step_directly(temporal, settings, session, TurnRequest(message="Hi."), max_reply_tokens=8)
    handle = temporal.get_workflow_handle(f"conversation:acme:{session}")
    given = 200  # of the longest comment the API takes
    await asyncio.gather(
        *(
            handle.signal(
                ConversationWorkflow.feedback,
                Feedback(turn=1, rating=1, comment=f"{n:04d}" + "c" * 1996),
            )
            for n in range(given)
        )
    )
    events = await records_for_key(
        settings.kafka_bootstrap,
        settings.conversation_events_topic,
        session,
        lambda found: sum(e["type"] == "conversation.feedback" for e in found) == given,
    )
    assert len({e["id"] for e in events if e["type"] == "conversation.feedback"}) == given
    view = await handle.query(ConversationWorkflow.transcript, TranscriptRequest())
    kept = view.turns[0].feedback
    assert (
        0 < len(kept) < given
        and len(json.dumps([asdict(f) for f in kept])) <= FEEDBACK_BYTES_PER_TURN
    )
    published = [e["data"]["comment"] for e in events if e["type"] == "conversation.feedback"]
    assert [f.comment for f in kept] == published[-len(kept) :]  # the latest are kept


async def test_a_request_the_slm_server_refuses_fails_the_turn_at_once_saying_why(
    temporal: Client, settings: Settings
) -> None:
    """A context budget beyond the model's (2048 tokens here) lets a long message through
    to the server, which refuses it: the turn fails without retries, and says so."""
    session = f"reject-{uuid.uuid4().hex[:10]}"
    with pytest.raises(WorkflowUpdateFailedError) as failed:
        await step_directly(
            temporal,
            settings,
            session,
            TurnRequest(message="word " * 4000),
            context_token_budget=100_000,
        )
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "slm_rejected"
    assert "Shorten the message" in cause.message and "context" in cause.message
    handle = temporal.get_workflow_handle(f"conversation:acme:{session}")
    view = await handle.query(ConversationWorkflow.transcript, TranscriptRequest())
    assert view.turns[-1].status == "failed"
    assert view.turns[-1].problem is not None and view.turns[-1].problem["code"] == "slm_rejected"
    assert view.turns[-1].problem["status"] == 422
