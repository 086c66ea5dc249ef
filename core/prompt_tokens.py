"""A streamed turn's prompt tokens, where the SLM server does not say them.

OpenAI-compatible servers report a stream's usage in its last chunk when asked
(`stream_options.include_usage`); vLLM does. llama-cpp-python's server (the embedded one)
reports none, so its streamed turns would count a prompt of 0 tokens. There, the prompt is
counted by the server's own tokenizer (`/extras/tokenize/count`) on the prompt as its
chat template writes it: ChatML, the template of the embedded model (counted so, a prompt
has exactly the tokens the server reports for the same messages sent whole).

The count is asked beside the stream, once a server was seen to omit usage, so that it is
ready when the stream ends; a server without the endpoint leaves the count at 0 (logged
once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx

log = logging.getLogger("orchestrator.slm")
#: The longest a count may take past the stream's end.
COUNT_SECONDS = 5.0


def chatml(messages: Sequence[tuple[str, str]]) -> str:
    """`messages` (role, content) as ChatML, ready for the assistant's reply."""
    turns = "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages)
    return turns + "<|im_start|>assistant\n"


class PromptCounter:
    def __init__(self, slm_url: str, api_key: str) -> None:
        self._url = slm_url.removesuffix("/").removesuffix("/v1") + "/extras/tokenize/count"
        self._http = httpx.AsyncClient(
            timeout=COUNT_SECONDS, headers={"Authorization": f"Bearer {api_key}"}
        )
        #: Whether the server was seen to leave a stream's usage out (None: not seen yet).
        self.server_omits_usage: bool | None = None
        self._unavailable = False

    def start(self, messages: Sequence[tuple[str, str]]) -> asyncio.Task[int] | None:
        """Count beside the stream, when the server is known to need it."""
        if not self.server_omits_usage or self._unavailable:
            return None
        return asyncio.ensure_future(self._count(messages))

    async def result(
        self, counting: asyncio.Task[int] | None, messages: Sequence[tuple[str, str]]
    ) -> int:
        """The prompt's tokens for a stream that ended without usage."""
        self.server_omits_usage = True
        if self._unavailable:
            return 0
        try:
            return await (counting or self._count(messages))
        except (httpx.HTTPError, ValueError, KeyError) as error:
            self._unavailable = True
            log.warning(
                "the SLM server cannot count prompt tokens; streamed turns count 0: %s", error
            )
            return 0

    async def _count(self, messages: Sequence[tuple[str, str]]) -> int:
        response = await self._http.post(self._url, json={"input": chatml(messages)})
        response.raise_for_status()
        return int(response.json()["count"])

    async def close(self) -> None:
        await self._http.aclose()
