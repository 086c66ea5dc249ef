"""Which API the chat talks to, and with which token.

`--api-url` (or `ORCH_CHAT_API_URL`), else the `api_url` that `orchestrator dev` wrote to
`<data dir>/dev.json`. `--token` (or `ORCH_CHAT_TOKEN`), else a user token of `--tenant`
signed with the data dir's dev key, as `orchestrator token` signs it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from core.settings import Settings
from core.tokens import TENANT_PATTERN, mint_token

DEFAULT_TENANT = "acme"


class ChatError(Exception):
    """A reason the chat cannot go on, said for the person at the terminal."""


@dataclass(frozen=True)
class Target:
    api_url: str
    token: str


def resolve(
    settings: Settings, api_url: str | None, token: str | None, tenant: str | None
) -> Target:
    api_url = api_url or os.environ.get("ORCH_CHAT_API_URL") or _dev_api_url(settings)
    token = token or os.environ.get("ORCH_CHAT_TOKEN")
    if token is not None:
        if tenant is not None:
            raise ChatError("--tenant is for the dev token the chat signs; a --token names its own")
        return Target(api_url.rstrip("/"), token.strip())
    tenant = tenant or DEFAULT_TENANT
    if not TENANT_PATTERN.fullmatch(tenant):
        raise ChatError(f"--tenant must match {TENANT_PATTERN.pattern}, got {tenant!r}")
    if not settings.signing_key_path.exists():
        raise ChatError(
            f"no token: there is no dev signing key at {settings.signing_key_path}; pass "
            "--token (or ORCH_CHAT_TOKEN) with a token the API accepts"
        )
    return Target(api_url.rstrip("/"), mint_token(settings, tenant=tenant, roles=["user"]))


def _dev_api_url(settings: Settings) -> str:
    dev_file = settings.data_dir / "dev.json"
    try:
        url = json.loads(dev_file.read_text())["api_url"]
    except FileNotFoundError:
        raise ChatError(
            f"no API to talk to: {dev_file} does not exist. Start one with `orchestrator dev` "
            "(or pass its --data-dir), or pass --api-url and --token"
        ) from None
    except (ValueError, KeyError, TypeError) as error:
        raise ChatError(f"{dev_file} has no api_url ({error}); pass --api-url") from None
    if not isinstance(url, str):
        raise ChatError(f"{dev_file}: api_url is not a URL; pass --api-url")
    return url
