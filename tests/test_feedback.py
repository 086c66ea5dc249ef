"""Feedback is an update whose validator refuses what the session cannot take, so a client is
told, never answered 202 for feedback that is then dropped."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import httpx
import pytest
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from tests.helpers.auth import bearer
from workflows.conversation.types import Feedback
from workflows.conversation.workflow import ConversationWorkflow


async def test_the_session_refuses_feedback_it_cannot_take_and_records_what_it_takes(
    api: httpx.AsyncClient, token: Callable[..., str], temporal: Client
) -> None:
    session = f"fb-{uuid.uuid4().hex[:10]}"
    step = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": "Say hi."},
        headers=bearer(token),
    )
    assert step.status_code == 200, step.text
    handle = temporal.get_workflow_handle(f"conversation:acme:{session}")

    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(ConversationWorkflow.give_feedback, Feedback(turn=2, rating=1))
    assert isinstance(refused.value.cause, ApplicationError)
    assert refused.value.cause.type == "invalid_request"

    given = await api.post(
        f"/v1/conversation/{session}/feedback",
        json={"turn": 1, "rating": -1, "comment": "too short"},
        headers=bearer(token),
    )
    assert given.status_code == 202, given.text
    view = await handle.query(ConversationWorkflow.view)
    assert [f.comment for f in view.turns[0].feedback] == ["too short"]

    closed = await api.post(f"/v1/conversation/{session}/close", headers=bearer(token))
    assert closed.status_code == 200, closed.text
    # A closed session's workflow may have ended already: the route says so either way.
    late = await api.post(
        f"/v1/conversation/{session}/feedback",
        json={"turn": 1, "rating": 1},
        headers=bearer(token),
    )
    assert late.status_code == 409 and late.json()["code"] == "session_closed", late.text
