"""The SLM activity: one chat completion from any OpenAI-compatible server, checked.

It runs on its own task queue (ORCH_SLM_TASK_QUEUE) so SLM capacity scales apart from the
workflows. Temporal owns the retries, so the HTTP client makes none of its own. The reply is
moderated here, where it is produced, and its verdict travels back with it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from openai import AsyncOpenAI
from temporalio import activity

from activities.moderation import Verdict, moderate
from core.policy import Policy
from core.settings import Settings

_HEARTBEAT_SECONDS = 2.0


@dataclass
class ChatMessage:
    role: str
    content: str


@dataclass
class CompletionRequest:
    messages: list[ChatMessage]
    max_tokens: int = 256
    temperature: float = 0.7
    #: Sent as HTTP headers, e.g. X-Policy-Version and X-Constitution-Hash.
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    duration_seconds: float = 0.0
    #: The output check of `text`; None from a worker that predates output checks here.
    verdict: Verdict | None = None


class SlmActivities:
    def __init__(self, settings: Settings, policy: Policy) -> None:
        self._policy = policy
        self._model = settings.slm_model
        self._client = AsyncOpenAI(
            base_url=settings.slm_url,
            api_key=settings.slm_api_key,
            timeout=settings.slm_timeout_seconds,
            max_retries=0,
        )

    async def close(self) -> None:
        await self._client.close()

    @activity.defn(name="slm.complete")
    async def complete(self, request: CompletionRequest) -> Completion:
        started = time.perf_counter()
        heartbeats = asyncio.create_task(_heartbeat_until_done())
        try:
            response = await self._client.chat.completions.create(
                model=self._model,
                messages=[{"role": m.role, "content": m.content} for m in request.messages],  # type: ignore[misc]
                max_tokens=request.max_tokens,
                temperature=request.temperature,
                extra_headers=request.headers,
            )
        finally:
            heartbeats.cancel()
        choice = response.choices[0]
        usage = response.usage
        text = choice.message.content or ""
        return Completion(
            text=text,
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason or "stop",
            duration_seconds=time.perf_counter() - started,
            verdict=moderate(self._policy, text, "output"),
        )


async def _heartbeat_until_done() -> None:
    # Heartbeats let Temporal notice a dead worker within the heartbeat timeout, not the
    # whole start-to-close timeout, and deliver cancellation to a waiting call.
    while True:
        activity.heartbeat()
        await asyncio.sleep(_HEARTBEAT_SECONDS)
