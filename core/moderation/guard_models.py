"""Guard models: OpenAI-compatible chat models that judge a text `safe` or `unsafe`.

A Llama Guard style model (served by vLLM, llama.cpp or any OpenAI-compatible server)
answers `safe`, or `unsafe` and a line of category labels (`S9`, or a policy category's own
name); the policy maps the labels to its categories. An `unsafe` answer whose labels name
none of the policy's categories allows: the policy, not the guard, says what is refused.
When the guard cannot be asked (unreachable, too slow, an answer that is neither), its
`on_error` setting decides: `open` allows, `closed` refuses with the policy's
`unavailable_message`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from typing import cast

from openai import AsyncOpenAI, OpenAIError
from openai.types.chat import ChatCompletionMessageParam

from core.moderation.finding import Finding
from core.policy import GuardModel, Policy

log = logging.getLogger("orchestrator.moderation")


class GuardAnswerUnreadable(ValueError):
    """The guard answered something other than `safe` or `unsafe`."""


class GuardModels:
    """The policy's guard models, asked in order; the first refusal decides."""

    def __init__(self, policy: Policy) -> None:
        self._guards = [
            (
                guard,
                AsyncOpenAI(
                    base_url=str(guard.base_url),
                    api_key=os.environ.get(guard.api_key_env or "", "") or "unused",
                    timeout=guard.timeout_seconds,
                    max_retries=0,
                ),
            )
            for guard in policy.document.guard_models
        ]

    async def check(self, text: str, stage: str, context: Sequence[str] = ()) -> Finding | None:
        for guard, client in self._guards:
            if stage not in guard.stages:
                continue
            finding = await _ask(guard, client, text, stage, context)
            if finding is not None:
                return finding
        return None

    async def close(self) -> None:
        for _, client in self._guards:
            await client.close()


async def _ask(
    guard: GuardModel, client: AsyncOpenAI, text: str, stage: str, context: Sequence[str]
) -> Finding | None:
    provider = f"guard:{guard.name}"
    try:
        response = await client.chat.completions.create(
            model=guard.model,
            messages=_messages(guard, text, stage, context),
            max_tokens=20,
            temperature=0.0,
            extra_body=guard.extra_body or None,
        )
        finding = read_answer(guard, response.choices[0].message.content or "")
        if finding is not None and stage == "input" and context:
            # It read the message with the turns before it.
            return replace(finding, basis="conversation")
        return finding
    except (OpenAIError, GuardAnswerUnreadable) as error:
        if guard.on_error == "open":
            log.warning("guard model %s unavailable, allowing (fail-open): %s", guard.name, error)
            return None
        log.warning("guard model %s unavailable, refusing (fail-closed): %s", guard.name, error)
        return Finding(None, provider, None)


def read_answer(guard: GuardModel, answer: str) -> Finding | None:
    """`safe`; or `unsafe` and its labels, the first one the policy maps deciding."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    verdict = lines[0].lower().rstrip(".") if lines else ""
    if verdict == "safe":
        return None
    if verdict != "unsafe":
        raise GuardAnswerUnreadable(f"the guard answered {answer[:80]!r}")
    labels = [label.strip() for label in ",".join(lines[1:]).split(",") if label.strip()]
    for label in labels:
        category = guard.categories.get(label.upper()) or guard.categories.get(label.lower())
        if category is None and label.lower() in guard.categories.values():
            category = label.lower()
        if category is not None:
            return Finding(category, f"guard:{guard.name}", None)
    log.info("guard model %s found %s unsafe, outside the policy's categories", guard.name, labels)
    return None


def _messages(
    guard: GuardModel, text: str, stage: str, context: Sequence[str]
) -> list[ChatCompletionMessageParam]:
    # One user turn (chat templates want roles to alternate): the recent turns, then the text;
    # at the output stage the text is the assistant's reply to them.
    asked = "\n\n".join([*context, text] if stage == "input" else context) or "(no request)"
    turns = [{"role": "user", "content": asked}]
    if stage == "output":
        turns.append({"role": "assistant", "content": text})
    if guard.format == "instruction":
        turns.insert(0, {"role": "system", "content": guard.instruction})
    return [cast(ChatCompletionMessageParam, turn) for turn in turns]
