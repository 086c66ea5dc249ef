"""The bodies of the OpenAI-compatible routes (docs/api.md, OpenAI-compatible API).

A request is read whole or refused: a field this API cannot honour is a 400 naming it
(`param`), never ignored. Accepted and ignored, because they change nothing a client could
see here: `seed`, `store`, `service_tier`, `parallel_tool_calls`, `prompt_cache_key`,
`safety_identifier`, a message's `name` and `refusal`. Accepted only at their neutral value:
`n` (1), `logprobs` (false), `top_logprobs` (0), `presence_penalty` and `frequency_penalty`
(0), `response_format` (text), `modalities` (["text"]), `logit_bias` ({}), `tools` and
`functions` ([]), `tool_choice` ("none"). Anything else OpenAI defines for tools, audio,
reasoning or search is refused, and so is an unknown field.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from core.errors import InvalidParameter
from core.messages import ChatMessage
from core.settings import Settings
from workflows.conversation.types import Sampling

Body = TypeVar("Body", bound=BaseModel)
#: The turn's message, as the step route takes it.
MAX_MESSAGE_CHARS = 8000
_ROLES = ("system", "developer", "user", "assistant")
#: Fields taken at one value only: the value that asks for nothing this API lacks.
_NEUTRAL: dict[str, tuple[str, tuple[object, ...]]] = {
    "n": ("unsupported_value", (1,)),
    "logprobs": ("unsupported_value", (False,)),
    "top_logprobs": ("unsupported_value", (0,)),
    "presence_penalty": ("unsupported_value", (0,)),
    "frequency_penalty": ("unsupported_value", (0,)),
    "response_format": ("unsupported_value", ({"type": "text"},)),
    "modalities": ("unsupported_value", (["text"],)),
    "logit_bias": ("unsupported_parameter", ({},)),
    "tools": ("unsupported_parameter", ([],)),
    "functions": ("unsupported_parameter", ([],)),
    "tool_choice": ("unsupported_parameter", ("none",)),
    "function_call": ("unsupported_parameter", ("none",)),
}
_REFUSED = ("audio", "prediction", "reasoning_effort", "web_search_options", "verbosity")
_WHY = {
    "tools": "this API offers no tools",
    "functions": "this API offers no functions",
    "tool_choice": "this API offers no tools",
    "function_call": "this API offers no functions",
    "n": "one choice is made per request",
    "logprobs": "log probabilities are not returned",
    "top_logprobs": "log probabilities are not returned",
    "response_format": "replies are plain text",
    "modalities": "replies are text",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessageIn(_Strict):
    role: str = Field(description="system, developer, user or assistant")
    content: str | list[dict[str, Any]] | None = Field(
        default=None, description="text, or a list of text parts"
    )
    name: str | None = None
    refusal: str | None = None
    tool_calls: Any = None
    tool_call_id: Any = None
    function_call: Any = None
    audio: Any = None

    @field_validator("role")
    @classmethod
    def _role(cls, role: str) -> str:
        if role in ("tool", "function"):
            raise PydanticCustomError(
                "unsupported_value",
                f"`{role}` messages are not supported: this API offers no tools.",
            )
        if role not in _ROLES:
            raise PydanticCustomError("invalid_value", f"role must be one of {', '.join(_ROLES)}.")
        return role

    @field_validator("content")
    @classmethod
    def _text_parts(cls, content: Any) -> Any:
        for part in content if isinstance(content, list) else []:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise PydanticCustomError(
                    "unsupported_value",
                    "Only text content parts are supported: {'type': 'text', 'text': ...}.",
                )
        return content

    @field_validator("tool_calls", "tool_call_id", "function_call", "audio")
    @classmethod
    def _no_tools(cls, value: Any) -> Any:
        if value:
            raise PydanticCustomError("unsupported_parameter", "This API offers no tools or audio.")
        return value

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(part["text"] for part in self.content)
        return self.content or ""


class StreamOptions(_Strict):
    include_usage: bool = Field(default=False, description="a last chunk with the usage")
    include_obfuscation: bool | None = None


class ChatCompletionRequest(_Strict):
    model: str = Field(min_length=1, description="the served model's id (GET /v1/models)")
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = Field(default=None, description="up to 4 sequences")
    user: str | None = Field(default=None, description="names the session (see X-Session-Id)")
    metadata: dict[str, str] | None = Field(
        default=None, max_length=16, description="kept with the turn; `session_id` names it"
    )
    seed: int | None = None
    store: bool | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    n: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_format: dict[str, Any] | None = None
    modalities: list[str] | None = None
    logit_bias: dict[str, Any] | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None
    audio: Any = None
    prediction: Any = None
    reasoning_effort: Any = None
    web_search_options: Any = None
    verbosity: Any = None

    @field_validator(*_NEUTRAL, *_REFUSED)
    @classmethod
    def _supported(cls, value: Any, info: Any) -> Any:
        name = info.field_name
        code, allowed = _NEUTRAL.get(name, ("unsupported_parameter", ()))
        if value is None or value in allowed:
            return value
        why = _WHY.get(name, "this API does not offer it")
        raise PydanticCustomError(code, f"`{name}` is not supported as sent: {why}.")

    @field_validator("stop")
    @classmethod
    def _stop(cls, stop: str | list[str] | None) -> str | list[str] | None:
        sequences = [stop] if isinstance(stop, str) else stop or []
        if len(sequences) > 4 or not all(0 < len(s) <= 100 for s in sequences):
            raise PydanticCustomError(
                "invalid_value", "At most 4 stop sequences of 1 to 100 characters."
            )
        return stop

    def turn(self) -> tuple[str, list[ChatMessage]]:
        """The turn's message (the last, a user's) and the earlier messages, system aside."""
        last = len(self.messages) - 1
        if self.messages[last].role != "user":
            raise InvalidParameter(
                "The last message must be the user's: it is the turn.", f"messages[{last}].role"
            )
        message = self.messages[last].text()
        if not message.strip() or len(message) > MAX_MESSAGE_CHARS:
            raise InvalidParameter(
                f"The last message must have 1 to {MAX_MESSAGE_CHARS} characters, not only "
                "white space.",
                f"messages[{last}].content",
            )
        earlier = []
        for index, m in enumerate(self.messages[:last]):
            text = m.text()
            if len(text) > MAX_MESSAGE_CHARS:
                raise InvalidParameter(
                    f"Each message may have at most {MAX_MESSAGE_CHARS} characters; this one "
                    f"has {len(text)}.",
                    f"messages[{index}].content",
                )
            if m.role in ("user", "assistant"):
                earlier.append(ChatMessage(m.role, text))
        return message, earlier

    def sampling(self, settings: Settings) -> Sampling | None:
        """The sampling the client asked for, within the operator's limits; None: none."""
        max_tokens, param = self.max_completion_tokens, "max_completion_tokens"
        if max_tokens is None:
            max_tokens, param = self.max_tokens, "max_tokens"
        elif self.max_tokens is not None and self.max_tokens != max_tokens:
            raise InvalidParameter(
                "max_tokens and max_completion_tokens differ; send one of them.", "max_tokens"
            )
        if max_tokens is not None and max_tokens > settings.max_reply_tokens:
            raise InvalidParameter(
                f"{param} is {max_tokens}; this server answers with at most "
                f"{settings.max_reply_tokens} tokens (ORCH_MAX_REPLY_TOKENS). Ask for fewer.",
                param,
            )
        if self.temperature is not None and self.temperature > settings.max_temperature:
            raise InvalidParameter(
                f"temperature is {self.temperature:g}; this server allows at most "
                f"{settings.max_temperature:g} (ORCH_MAX_TEMPERATURE).",
                "temperature",
            )
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        if max_tokens is None and self.temperature is None and self.top_p is None and not stop:
            return None
        return Sampling(max_tokens, self.temperature, self.top_p, stop)


def parse_request(raw: bytes) -> ChatCompletionRequest:
    """The body, or the first thing wrong with it as a 400 that names the field."""
    return parse_body(raw, ChatCompletionRequest)


def parse_body(raw: bytes, model: type[Body]) -> Body:
    """`raw` as a `model`, or the first thing wrong with it as a 400 that names the field."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidParameter(f"The body is not JSON: {error}.", None, "invalid_json") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidParameter(*_said(first)) from None


def _said(error: Any) -> tuple[str, str | None, str]:
    """A pydantic error as OpenAI says it: message, param (`messages[2].role`), code."""
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    param = path.lstrip(".") or None
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}", param, "unknown_parameter"
    if kind == "missing":
        return f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
    if kind in ("unsupported_parameter", "unsupported_value", "invalid_value"):
        return error["msg"], param, kind
    if kind == "model_type":
        return "The body must be a JSON object.", None, "invalid_value"
    return f"Invalid value for '{param}': {error['msg']}.", param, "invalid_value"
