"""Payload encryption: what Temporal stores of our workflows (messages, replies, verdicts,
events waiting to be published) is AES-256-GCM ciphertext; only processes holding the keys
read it.

Keys live in a JSON file (ORCH_CODEC_KEY_FILE; a mounted Secret in production):

    {"active": "2026-12", "keys": {"2026-12": "<base64 of 32 bytes>", "2026-06": "..."}}

New payloads are encrypted with the `active` key, and each carries its key id in its
metadata, so every key still listed decrypts what it wrote: to rotate, add a key, make it
active, and drop the old one once no retained history needs it (docs/operations.md). A
payload without our encoding (histories from before encryption) passes through as it is.
Under `orchestrator dev` the file is generated on first use, like the dev signing key.

Each payload is bound to its tenant: the SDK tells the codec which workflow a payload
belongs to (its serialization context), the tenant in that workflow's id is written into
the payload's metadata (`encryption-tenant`) and sealed with it as AES-GCM's associated
data. A payload moved into another tenant's workflow is refused there, and one whose tenant
was rewritten decrypts nowhere. The codec endpoint, which has no workflow, reads the tenant
from the payload. Payloads sealed before this binding carry no tenant and still decrypt.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from core.files import missing_key, read_private, write_once

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
TENANT = "encryption-tenant"
_NONCE_BYTES = 12


class CodecKeyError(ValueError):
    """The key file cannot be used, or a payload names a key it does not hold."""


@dataclass(frozen=True)
class CodecKeys:
    active: str
    keys: dict[str, bytes]

    @classmethod
    def load(cls, path: Path) -> CodecKeys:
        try:
            document = json.loads(read_private(path, "ORCH_CODEC_KEY_FILE"))
            keys = {
                kid: base64.b64decode(value, validate=True)
                for kid, value in document["keys"].items()
            }
            active = str(document["active"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise CodecKeyError(f"{path}: not a key file ({error})") from None
        if active not in keys:
            raise CodecKeyError(f"{path}: the active key {active!r} is not among its keys")
        short = sorted(kid for kid, key in keys.items() if len(key) != 32)
        if short:
            raise CodecKeyError(f"{path}: keys {short} are not 32 bytes (AES-256)")
        return cls(active, keys)

    @classmethod
    def load_or_create(cls, path: Path, *, create: bool) -> CodecKeys:
        """The keys at `path`; where there are none, made once (mode 0600, atomically) when
        `create` (dev mode), else start-up stops saying where keys belong."""
        if not path.exists():
            if not create:
                raise missing_key(
                    "ORCH_CODEC_KEY_FILE",
                    path,
                    "not set, and there is no key file; in production mount your keys and "
                    "point it at them (docs/operations.md, key rotation)",
                )
            document = {
                "active": "dev-1",
                "keys": {"dev-1": base64.b64encode(os.urandom(32)).decode()},
            }
            write_once(path, json.dumps(document, indent=2).encode())
        return cls.load(path)


def tenant_of(workflow_id: str) -> str | None:
    """The tenant in one of our workflow ids (`conversation:<tenant>:<session>`,
    `erasure:<tenant>:<job>`, `moderation:<tenant>:<request>`, `policy:<tenant>:<change>`,
    `training-mode:<tenant>`); None for any other id."""
    kind, _, rest = workflow_id.partition(":")
    if kind in ("conversation", "erasure", "moderation", "policy"):
        tenant, _, session = rest.partition(":")
        return tenant if tenant and session else None
    if kind == "training-mode":
        return rest or None
    return None


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    def __init__(self, keys: CodecKeys, tenant: str | None = None) -> None:
        self._keys = keys
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.keys.items()}
        #: The tenant of the workflow whose payloads this copy seals and opens, if known.
        self._tenant = tenant

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        """A copy for one workflow's payloads (the SDK asks on every conversion): the same
        keys and ciphers, its tenant."""
        workflow_id = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            workflow_id = context.workflow_id
        tenant = tenant_of(workflow_id) if workflow_id else None
        if tenant == self._tenant:
            return self
        bound = copy.copy(self)
        bound._tenant = tenant
        return bound

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        kid = self._keys.active
        cipher = self._ciphers[kid]
        metadata = {"encoding": ENCODING, KEY_ID: kid.encode()}
        if self._tenant:
            metadata[TENANT] = self._tenant.encode()
        encoded = []
        for payload in payloads:
            nonce = os.urandom(_NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), _bound(kid, self._tenant))
            encoded.append(Payload(metadata=metadata, data=nonce + sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode(payload) for payload in payloads]

    def _decode(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        kid = payload.metadata.get(KEY_ID, b"").decode()
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise CodecKeyError(
                f"a payload was encrypted with key {kid!r}, which the key file no longer "
                "holds: add it back to decrypt it"
            )
        tenant = payload.metadata.get(TENANT, b"").decode() or None
        if tenant and self._tenant and tenant != self._tenant:
            raise CodecKeyError(
                f"a payload of tenant {tenant!r} was found in a workflow of tenant "
                f"{self._tenant!r}: it is refused"
            )
        try:
            plain = cipher.decrypt(
                payload.data[:_NONCE_BYTES], payload.data[_NONCE_BYTES:], _bound(kid, tenant)
            )
        except InvalidTag:
            raise CodecKeyError(f"a payload does not decrypt with key {kid!r}") from None
        return Payload.FromString(plain)


def _bound(kid: str, tenant: str | None) -> bytes:
    """AES-GCM's associated data: the key id, and the tenant the payload belongs to."""
    return kid.encode() if tenant is None else f"{kid}\x00{tenant}".encode()
