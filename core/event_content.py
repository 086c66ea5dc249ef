"""The content of an event, encrypted for its consumers (ORCH_EVENTS_ENCRYPT_CONTENT).

What users wrote and were answered (`message`, `reply`, `comment`, `metadata`, a training
`reason`) leaves the event's `data` and is sealed, as one JSON object, with the payload
codec's active key (AES-256-GCM; the event's `id` as associated data, so sealed content
cannot be moved to another event):

    "data": {..., "encrypted": {"key_id": "2026-12", "fields": ["message", "reply"],
                                "sealed": "<base64 of nonce and ciphertext>"}}

A consumer without the keys sees the envelope, the ids and the verdicts; one with them
calls `opened` (docs/events.md).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.codec import CodecKeys

#: The members of an event's `data` that hold what people wrote.
CONTENT_FIELDS = ("message", "reply", "comment", "metadata", "reason")
_NONCE_BYTES = 12


def sealed(event: dict[str, Any], keys: CodecKeys) -> dict[str, Any]:
    """`event` with its content fields sealed (unchanged when it has none)."""
    data = event.get("data")
    if not isinstance(data, dict):
        return event
    content = {name: data[name] for name in CONTENT_FIELDS if name in data}
    if not content:
        return event
    nonce = os.urandom(_NONCE_BYTES)
    plain = json.dumps(content, separators=(",", ":")).encode()
    cipher = AESGCM(keys.keys[keys.active]).encrypt(nonce, plain, str(event.get("id", "")).encode())
    kept = {name: value for name, value in data.items() if name not in content}
    kept["encrypted"] = {
        "key_id": keys.active,
        "fields": sorted(content),
        "sealed": base64.b64encode(nonce + cipher).decode(),
    }
    return {**event, "data": kept}


def opened(event: dict[str, Any], keys: CodecKeys) -> dict[str, Any]:
    """`event` with its sealed content back in `data` (unchanged when none is sealed)."""
    data = event.get("data")
    if not isinstance(data, dict) or "encrypted" not in data:
        return event
    envelope = data["encrypted"]
    raw = base64.b64decode(envelope["sealed"])
    key = keys.keys[envelope["key_id"]]
    plain = AESGCM(key).decrypt(
        raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], str(event.get("id", "")).encode()
    )
    content: dict[str, Any] = json.loads(plain)
    kept = {name: value for name, value in data.items() if name != "encrypted"}
    return {**event, "data": {**kept, **content}}
