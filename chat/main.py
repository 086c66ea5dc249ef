"""`orchestrator chat`: find the API, open the terminal, chat until the person leaves."""

from __future__ import annotations

import contextlib

from rich.console import Console

from chat.connection import ApiError, ChatApi
from chat.target import ChatError, resolve
from chat.terminal import Chat
from core.settings import Settings

with contextlib.suppress(ImportError):  # line editing and history at the prompt, where it exists
    import readline  # noqa: F401


def run_chat(
    settings: Settings,
    api_url: str | None,
    token: str | None,
    tenant: str | None,
    session_id: str | None,
) -> None:
    api = ChatApi(resolve(settings, api_url, token, tenant))
    try:
        Chat(api, Console(emoji=False, highlight=False), session_id).run()
    except ApiError as error:
        hint = "; pass a valid --token" if error.status == 401 else ""
        raise ChatError(f"the API at {api.api_url} refused: {error}{hint}") from None
    finally:
        api.close()
