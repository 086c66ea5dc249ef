"""Encrypted histories (docs/operations.md, Payload encryption): what Temporal stores of a
turn is ciphertext, failures' messages and stack traces too; the processes and the codec
endpoint read it; keys rotate."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowFailureError
from temporalio.converter import WorkflowSerializationContext
from temporalio.worker import Worker

from core.codec import ENCODING, TENANT, CodecKeyError, CodecKeys, EncryptionCodec
from core.settings import Settings
from tests.helpers.failing_workflow import FailingWorkflow
from tests.helpers.own_api import own_api


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _keys(tmp_path: Path, active: str, **keys: str) -> CodecKeys:
    path = tmp_path / f"{active}.json"
    path.write_text(json.dumps({"active": active, "keys": keys}))
    path.chmod(0o600)
    return CodecKeys.load(path)


async def test_keys_rotate_and_old_payloads_still_decode(tmp_path: Path) -> None:
    old, new = _key(), _key()
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"message":"hello"}')
    (sealed,) = await EncryptionCodec(_keys(tmp_path, "2026-06", **{"2026-06": old})).encode(
        [plain]
    )
    assert sealed.metadata["encoding"] == ENCODING and b"hello" not in sealed.data
    rotated = EncryptionCodec(_keys(tmp_path, "2026-12", **{"2026-06": old, "2026-12": new}))
    assert await rotated.decode([sealed]) == [plain]
    (fresh,) = await rotated.encode([plain])
    assert fresh.metadata["encryption-key-id"] == b"2026-12"
    dropped = EncryptionCodec(_keys(tmp_path, "2026-12", **{"2026-12": new}))
    with pytest.raises(CodecKeyError, match="2026-06"):
        await dropped.decode([sealed])
    # Histories from before encryption pass through untouched.
    assert await dropped.decode([plain]) == [plain]


async def test_a_tampered_payload_is_refused(tmp_path: Path) -> None:
    codec = EncryptionCodec(_keys(tmp_path, "k", k=_key()))
    (sealed,) = await codec.encode([Payload(data=b"x")])
    sealed.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(CodecKeyError, match="does not decrypt"):
        await codec.decode([sealed])


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"active": "k", "keys": {"k": base64.b64encode(b"short").decode()}}, "32 bytes"),
        ({"active": "other", "keys": {"k": base64.b64encode(b"k" * 32).decode()}}, "active key"),
        ({"keys": {}}, "not a key file"),
    ],
)
def test_a_key_file_it_cannot_use_is_refused(
    tmp_path: Path, document: dict[str, object], reason: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    with pytest.raises(CodecKeyError, match=reason):
        CodecKeys.load(path)


async def test_history_holds_no_message_and_the_codec_endpoint_reads_it(
    api: httpx.AsyncClient, token: Callable[..., str], settings: Settings, temporal: Client
) -> None:
    session = f"s-{uuid.uuid4().hex[:12]}"
    canary = f"zebracanary{uuid.uuid4().hex[:6]}"
    response = await api.post(
        "/v1/conversation/step",
        json={"session_id": session, "message": f"Say {canary} back."},
        headers={"Authorization": f"Bearer {token('acme', 'user')}"},
    )
    assert response.status_code == 200, response.text
    transcript = await api.get(
        f"/v1/conversation/{session}", headers={"Authorization": f"Bearer {token('acme', 'user')}"}
    )
    assert canary in transcript.json()["turns"][0]["message"]  # the processes read it

    # What Temporal stores, read without the keys.
    bare = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    history = await bare.get_workflow_handle(f"conversation:acme:{session}").fetch_history()
    # Only the session's title, its first message redacted, is readable: a search attribute
    # (ORCH_SESSION_TITLES; without titles, nothing is: the test below).
    started = history.events[0].workflow_execution_started_event_attributes
    assert canary.encode() in started.search_attributes.indexed_fields["Title"].data
    del started.search_attributes.indexed_fields["Title"]
    assert canary.encode() not in b"".join(e.SerializeToString() for e in history.events)
    update = next(
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.args
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    )
    sealed = [json_format.MessageToDict(p) for p in update.payloads]
    assert all(base64.b64decode(p["metadata"]["encoding"]) == ENCODING for p in sealed)
    # Sealed with its tenant: the SDK told the codec whose workflow it belongs to.
    assert all(base64.b64decode(p["metadata"]["encryption-tenant"]) == b"acme" for p in sealed)

    # The platform's operator reads it; no role of a tenant does, its admin's included.
    operator = {"Authorization": f"Bearer {token('ops', 'operator')}"}
    decoded = await api.post("/v1/codec/decode", json={"payloads": sealed}, headers=operator)
    assert decoded.status_code == 200, decoded.text
    (message,) = decoded.json()["payloads"]
    assert canary in base64.b64decode(message["data"]).decode()
    encoded = await api.post("/v1/codec/encode", json=decoded.json(), headers=operator)
    again = await api.post("/v1/codec/decode", json=encoded.json(), headers=operator)
    assert again.json() == decoded.json()

    for tenant, role in (("acme", "user"), ("acme", "admin"), ("globex", "admin")):
        them = {"Authorization": f"Bearer {token(tenant, role)}"}
        refused = await api.post("/v1/codec/decode", json={"payloads": sealed}, headers=them)
        assert refused.status_code == 403, (tenant, role)
        refused = await api.post("/v1/codec/encode", json=decoded.json(), headers=them)
        assert refused.status_code == 403, (tenant, role)
    # The Temporal UI's origin may call it from a browser.
    preflight = await api.options(
        "/v1/codec/decode",
        headers={
            "Origin": "http://localhost:8233",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:8233"


async def test_without_titles_history_holds_no_text_of_the_conversation(
    token: Callable[..., str], settings: Settings
) -> None:
    untitled = settings.model_copy(update={"session_titles": False})
    session = f"s-{uuid.uuid4().hex[:12]}"
    canary = f"zebracanary{uuid.uuid4().hex[:6]}"
    headers = {"Authorization": f"Bearer {token('acme', 'user', subject=canary)}"}
    async with own_api(untitled) as url, httpx.AsyncClient(base_url=url, timeout=90) as api:
        response = await api.post(
            "/v1/conversation/step",
            json={"session_id": session, "message": f"Say {canary} back."},
            headers=headers,
        )
        assert response.status_code == 200, response.text
        async with asyncio.timeout(30):
            while not (listed := (await api.get("/v1/conversations", headers=headers)).json())[
                "sessions"
            ]:
                await asyncio.sleep(0.2)
        assert [(s["session_id"], s["title"]) for s in listed["sessions"]] == [(session, "")]
    bare = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    history = await bare.get_workflow_handle(f"conversation:acme:{session}").fetch_history()
    # Neither the message nor its owner (the subject is only a digest in visibility).
    assert canary.encode() not in b"".join(e.SerializeToString() for e in history.events)


async def test_a_failure_keeps_its_message_and_stack_trace_out_of_history(
    settings: Settings, temporal: Client
) -> None:
    canary = f"zebracanary{uuid.uuid4().hex[:6]}"
    queue = f"failing-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal, task_queue=queue, workflows=[FailingWorkflow]):
        handle = await temporal.start_workflow(
            FailingWorkflow.run, f"held by {canary}", id=queue, task_queue=queue
        )
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    assert canary in str(failed.value.cause)  # the processes read it

    bare = await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)
    history = await bare.get_workflow_handle(queue).fetch_history()
    assert canary.encode() not in b"".join(e.SerializeToString() for e in history.events)
    failure = next(
        e.workflow_execution_failed_event_attributes.failure
        for e in history.events
        if e.HasField("workflow_execution_failed_event_attributes")
    )
    assert failure.message == "Encoded failure" and not failure.stack_trace


def _in(workflow_id: str, codec: EncryptionCodec) -> EncryptionCodec:
    return codec.with_context(WorkflowSerializationContext("default", workflow_id))


async def test_a_payload_is_bound_to_its_tenant(tmp_path: Path) -> None:
    codec = EncryptionCodec(_keys(tmp_path, "k1", k1=_key()))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'{"message":"hello"}')
    (sealed,) = await _in("conversation:acme:s1", codec).encode([plain])
    assert sealed.metadata[TENANT] == b"acme"
    # Its own tenant's workflows and the codec endpoint (no workflow) read it.
    assert await _in("conversation:acme:s2", codec).decode([sealed]) == [plain]
    assert await _in("training-mode:acme", codec).decode([sealed]) == [plain]
    assert await codec.decode([sealed]) == [plain]
    # Moved into another tenant's workflow, it is refused there.
    with pytest.raises(CodecKeyError, match="tenant 'acme'.*tenant 'globex'"):
        await _in("conversation:globex:s1", codec).decode([sealed])
    # Its tenant rewritten (or dropped), it decrypts nowhere: the tenant is sealed with it.
    for tenant in (b"globex", b""):
        moved = Payload()
        moved.CopyFrom(sealed)
        moved.metadata[TENANT] = tenant
        with pytest.raises(CodecKeyError, match="does not decrypt"):
            await codec.decode([moved])
    # A payload sealed before the binding (no tenant) still decrypts, in any workflow.
    (legacy,) = await codec.encode([plain])
    assert TENANT not in legacy.metadata
    assert await _in("conversation:globex:s1", codec).decode([legacy]) == [plain]
