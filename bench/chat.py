"""The chat completion every benchmark path asks for, and reading one as a stream."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from workflows.conversation.context import SYSTEM_PROMPT

PROMPT = "Write a long story about a lighthouse keeper."
MAX_TOKENS = 64


def chat_body(model: str, max_tokens: int = MAX_TOKENS, **extra: Any) -> dict[str, Any]:
    """The same messages and sampling the SLM activity sends (activities/slm.py)."""
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": PROMPT},
        ],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        **extra,
    }


def streamed(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "stream": True, "stream_options": {"include_usage": True}}


async def first_token(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[float, int]:
    """Stream the completion to its end; when its first content came (`time.perf_counter`),
    and how many chunks had content."""
    first, tokens = 0.0, 0
    async with http.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line.endswith("[DONE]"):
                continue
            choices = json.loads(line.removeprefix("data:")).get("choices") or [{}]
            if choices[0].get("delta", {}).get("content"):
                first = first or time.perf_counter()
                tokens += 1
    if not tokens:
        raise RuntimeError("the SLM server streamed no content")
    return first, tokens
