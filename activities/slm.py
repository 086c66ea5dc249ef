"""The SLM activity: one chat completion from any OpenAI-compatible server, checked.

It runs on its own task queue (ORCH_SLM_TASK_QUEUE) so SLM capacity scales apart from the
workflows. Temporal owns the retries, so the HTTP client makes none of its own. The reply is
moderated here, where it is produced, and its verdict travels back with it.

A streamed turn's request names its Redis Stream: the activity then asks the server for a
stream and appends each delta as a `token` event as it comes (the stream is the buffer, so
no reader can slow it), and still returns the whole reply, which is what history records.
A retried attempt first appends `retract`, so a reader discards the earlier attempt's text.

A streamed reply is checked on windows as it grows (core/moderation/reply_check.py); the whole
reply is checked once complete, through every layer (guard models included).

A turn's admission, the input check and the training lease read (core/admission.py),
runs first, in the same activity: the SLM server is only called once the check allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from openai import AsyncOpenAI, AsyncStream, BadRequestError
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.redis_stream import StreamEvent, StreamTarget, TurnStreams
from core.admission import Admission, AdmissionRequest, Admitted
from core.messages import ChatMessage
from core.moderation.moderator import Moderator
from core.moderation.reply_check import CheckedReply
from core.moderation.tenant_moderators import TenantModerators
from core.moderation.verdict import Verdict, public_verdict
from core.prompt_tokens import PromptCounter
from core.settings import Settings
from core.usage import Account, UsageLedger

#: The ApplicationError type of a request the SLM server refused (HTTP 400).
SLM_REJECTED = "slm_rejected"
log = logging.getLogger("orchestrator.slm")
_tracer = trace.get_tracer("orchestrator.slm")
#: Often enough that a cancellation reaches the call within a second (the SLM worker sends
#: heartbeats on at most every half second; see worker/main.py).
_HEARTBEAT_SECONDS = 0.25
#: The sampling temperature of a turn whose client asked for none.
DEFAULT_TEMPERATURE = 0.7


@dataclass
class CompletionRequest:
    messages: list[ChatMessage]
    max_tokens: int = 256
    temperature: float = DEFAULT_TEMPERATURE
    #: A client's own (the OpenAI-compatible route); None and empty: the server's defaults.
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    #: Sent as HTTP headers. X-Policy-Version and X-Constitution-Hash are the checking
    #: policy's, added here (turns from before admissions ran here sent them).
    headers: dict[str, str] = field(default_factory=dict)
    #: A streamed turn: where its tokens go, and the events that open its stream (the input
    #: verdict's is added here, after the admission).
    stream: StreamTarget | None = None
    opening: list[StreamEvent] = field(default_factory=list)
    #: The turn's input check and lease read, run here before the call; None in turns from
    #: before, which ran them in the workflow as local activities.
    admission: AdmissionRequest | None = None
    #: Whose usage the call is (core/usage.py); None in turns from before usage was counted.
    account: Account | None = None


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    duration_seconds: float = 0.0
    #: The output check of `text`; None from a worker that predates output checks here,
    #: and when the input was refused (then `text` is empty).
    verdict: Verdict | None = None
    #: The admission's outcome, when the request asked for one.
    admitted: Admitted | None = None


class SlmActivities:
    def __init__(
        self,
        settings: Settings,
        moderators: TenantModerators,
        streams: TurnStreams,
        admission: Admission,
        ledger: UsageLedger,
    ) -> None:
        self._moderators = moderators
        self._ledger = ledger
        self._admission = admission
        self._model = settings.slm_model
        self._prompts = PromptCounter(settings.slm_url, settings.slm_api_key)
        self._log_content = settings.log_content
        self._streams = streams
        self._client = AsyncOpenAI(
            base_url=settings.slm_url,
            api_key=settings.slm_api_key,
            timeout=settings.slm_timeout_seconds,
            max_retries=0,
        )

    async def close(self) -> None:
        await self._client.close()
        await self._prompts.close()

    @activity.defn(name="slm.complete")
    async def complete(self, request: CompletionRequest) -> Completion:
        heartbeats = asyncio.create_task(_heartbeat_until_done())
        try:
            # The tenant's policy as it stands now checks the whole turn, its reply too.
            tenant = request.admission.tenant if request.admission else None
            moderator = await self._moderators.for_tenant(tenant)
            admitted = None
            if request.admission is not None:
                admitted = await self._admission.admit(request.admission, moderator)
                if admitted.refused:  # the SLM server is never called
                    await self._settle(request, 0, 0, admitted.verdict)
                    return Completion("", 0, 0, "input_refused", admitted=admitted)
            started = time.perf_counter()
            completion = await self._call(request, admitted, moderator)
        finally:
            heartbeats.cancel()
        completion.admitted = admitted
        completion.duration_seconds = time.perf_counter() - started
        asked = [m.content for m in request.messages if m.role == "user"][-1:]
        if completion.verdict is None:  # a refused window already decided
            completion.verdict = await moderator.check(completion.text, "output", asked)
        await self._settle(
            request, completion.prompt_tokens, completion.completion_tokens, completion.verdict
        )
        if self._log_content:
            content = {"user_message": asked[0] if asked else "", "reply": completion.text}
            log.info("slm reply", extra=content)
        return completion

    async def _settle(
        self, request: CompletionRequest, prompt: int, completion: int, verdict: Verdict
    ) -> None:
        """Count the turn's tokens once, as its record will keep them."""
        if request.account is not None:
            refused = verdict.category if verdict.decision == "refuse" else None
            await self._ledger.settle(request.account, prompt, completion, refused)

    async def _call(
        self, request: CompletionRequest, admitted: Admitted | None, moderator: Moderator
    ) -> Completion:
        """The chat completion, whole or streamed, in its client span (GenAI conventions).

        The OpenAI SDK speaks httpx, which no instrumentation here sees: the span is made
        here, and its traceparent goes to the server."""
        with _tracer.start_as_current_span(f"chat {self._model}", kind=SpanKind.CLIENT) as span:
            span.set_attributes(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": self._model,
                    "gen_ai.request.max_tokens": request.max_tokens,
                }
            )
            policy = moderator.policy
            headers = {
                "X-Policy-Version": policy.version,
                "X-Constitution-Hash": policy.constitution_hash,
                **request.headers,
            }
            inject(headers)
            try:
                if request.stream is None:
                    completion = await self._whole(request, headers)
                else:
                    completion = await self._streamed(
                        request, headers, request.stream, admitted, moderator
                    )
            except BadRequestError as error:
                # The server refuses this request as it is (e.g. longer than the model's
                # context): asking again cannot help.
                raise ApplicationError(
                    f"The language model refused the request: {error.message}",
                    type=SLM_REJECTED,
                    non_retryable=True,
                ) from None
            span.set_attributes(
                {
                    "gen_ai.usage.input_tokens": completion.prompt_tokens,
                    "gen_ai.usage.output_tokens": completion.completion_tokens,
                    "gen_ai.response.finish_reasons": [completion.finish_reason],
                }
            )
        return completion

    def _body(self, request: CompletionRequest, **more: object) -> dict[str, object]:
        """The request's JSON, as the OpenAI client would send it. Posted as is: the client's
        own `chat.completions.create` walks every parameter against its type hints, which
        cost a quarter of a worker's Python time per turn (`python -m bench cost`)."""
        body: dict[str, object] = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = request.stop
        return body | more

    async def _whole(self, request: CompletionRequest, headers: dict[str, str]) -> Completion:
        response = await self._client.post(
            "/chat/completions",
            cast_to=ChatCompletion,
            body=self._body(request),
            options={"headers": headers},
        )
        choice, usage = response.choices[0], response.usage
        return Completion(
            text=choice.message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason or "stop",
        )

    async def _streamed(
        self,
        request: CompletionRequest,
        headers: dict[str, str],
        target: StreamTarget,
        admitted: Admitted | None,
        moderator: Moderator,
    ) -> Completion:
        attempt = activity.info().attempt
        opening = request.opening
        if admitted is not None:  # the opening ends with the input verdict
            opening = [*opening, StreamEvent("verdict", public_verdict(admitted.verdict))]
        await self._streams.append(target, [], attempt, opening=opening)
        if attempt > 1:  # the reader drops what an earlier attempt sent
            await self._append(target, StreamEvent("retract", {"reason": "retry"}), attempt)
        said = [(m.role, m.content) for m in request.messages]
        chunks = await self._client.post(
            "/chat/completions",
            cast_to=ChatCompletion,
            body=self._body(request, stream=True, stream_options={"include_usage": True}),
            options={"headers": headers},
            stream=True,
            stream_cls=AsyncStream[ChatCompletionChunk],
        )
        counting = self._prompts.start(said)  # beside the stream, where the server needs it
        reply = CheckedReply(moderator)
        completion = Completion(text="", prompt_tokens=0, completion_tokens=0, finish_reason="")
        try:
            async for chunk in chunks:
                if chunk.usage is not None:
                    completion.prompt_tokens = chunk.usage.prompt_tokens
                    completion.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    completion.finish_reason = choice.finish_reason or completion.finish_reason
                    delta = choice.delta.content
                    if not delta:
                        continue
                    completion.verdict = await reply.add(delta)
                    if completion.verdict is not None:
                        completion.finish_reason = "content_filter"
                        break
                    token = {"index": len(reply.parts) - 1, "delta": delta}
                    await self._append(target, StreamEvent("token", token), attempt)
                if completion.verdict is not None:
                    break  # leaving the loop closes the request: the server stops generating
        except BaseException:
            if counting is not None:
                counting.cancel()
            raise
        finally:
            await chunks.close()  # also when cancelled
        if not completion.finish_reason:
            if counting is not None:
                counting.cancel()
            # A stream that ends without saying why was cut short: this attempt failed, and
            # the retry retracts its text.
            raise RuntimeError("the SLM server ended the stream without a finish reason")
        completion.text = "".join(reply.parts)
        completion.completion_tokens = completion.completion_tokens or len(reply.parts)
        if completion.prompt_tokens:
            self._prompts.server_omits_usage = False
            if counting is not None:
                counting.cancel()
        else:
            completion.prompt_tokens = await self._prompts.result(counting, said)
        return completion

    async def _append(self, target: StreamTarget, event: StreamEvent, attempt: int) -> None:
        if not await self._streams.append(target, [event], attempt):
            # A later attempt of this activity owns the stream: this one is a leftover.
            raise RuntimeError(f"attempt {attempt} was superseded; stopping it")


async def _heartbeat_until_done() -> None:
    # Heartbeats let Temporal notice a dead worker within the heartbeat timeout, not the
    # whole start-to-close timeout, and deliver cancellation to a waiting call. The first
    # waits a beat: a call shorter than that needs none, and the SDK sends a first
    # heartbeat to the server at once, which would compete with the call's own start.
    while True:
        await asyncio.sleep(_HEARTBEAT_SECONDS)
        activity.heartbeat()
