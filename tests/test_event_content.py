"""Events can leave with their content sealed (ORCH_EVENTS_ENCRYPT_CONTENT): a consumer
without the payload codec's keys sees the envelope and ids, one with them reads it all."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from temporalio.common import MetricMeter
from temporalio.testing import ActivityEnvironment

from activities.events import EventPublisher, PublishRequest
from core.codec import CodecKeys
from core.event_content import opened, sealed
from core.settings import Settings
from tests.helpers.kafka_records import records_for_key


def _keys(tmp_path: Path) -> CodecKeys:
    path = tmp_path / "keys.json"
    key = base64.b64encode(os.urandom(32)).decode()
    path.write_text(json.dumps({"active": "k1", "keys": {"k1": key}}))
    path.chmod(0o600)
    return CodecKeys.load(path)


def _event(message: str) -> dict[str, object]:
    return {
        "id": uuid.uuid4().hex,
        "type": "conversation.turn.completed",
        "data": {"session_id": "s1", "turn": 1, "message": message, "reply": "Hi.", "usage": {}},
    }


def test_sealed_content_opens_with_the_keys_and_only_for_its_event(tmp_path: Path) -> None:
    keys, event = _keys(tmp_path), _event("my secret plan")
    shut = sealed(event, keys)
    assert "my secret plan" not in json.dumps(shut) and "Hi." not in json.dumps(shut)
    assert shut["data"]["session_id"] == "s1" and shut["data"]["turn"] == 1  # type: ignore[index]
    assert shut["data"]["encrypted"]["fields"] == ["message", "reply"]  # type: ignore[index]
    assert opened(shut, keys) == event
    with pytest.raises(InvalidTag):  # moved to another event, it does not open
        opened({**shut, "id": uuid.uuid4().hex}, keys)
    assert sealed({"id": "x", "data": {"turns": 3}}, keys) == {"id": "x", "data": {"turns": 3}}


async def test_a_published_event_holds_no_content_without_the_keys(
    settings: Settings, tmp_path: Path
) -> None:
    on = settings.model_copy(update={"events_encrypt_content": True})
    publisher = EventPublisher(on, MetricMeter.noop)
    key, message = uuid.uuid4().hex, f"canary {uuid.uuid4().hex}"
    event = _event(message)
    try:
        await ActivityEnvironment().run(
            publisher.publish,
            PublishRequest(topic=on.conversation_events_topic, key=key, value=event, headers={}),
        )
    finally:
        await publisher.close()
    (record,) = await records_for_key(on.kafka_bootstrap, on.conversation_events_topic, key, bool)
    record.pop("_headers")
    assert message not in json.dumps(record)
    keys = CodecKeys.load(on.codec_key_path)
    assert opened(record, keys) == event
