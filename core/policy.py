"""The moderation policy: a versioned file, its hash, its rules and the layers it configures.

`constitution_hash` is the sha256 of the canonical policy document: the parsed JSON written
back with sorted keys, no insignificant white space, UTF-8 (so re-indenting the file does
not change it, and any change to a rule or message does).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from core.moderation.pii import PiiKind
from core.settings import ConfigurationError

REQUIRED_CATEGORIES = frozenset(
    {
        "violence", "weapons", "self_harm", "hate", "sexual_minors",
        "illicit_drugs", "cybercrime", "prompt_injection", "pii",
    }
)  # fmt: skip
ACTIVE_POLICY_KEY = "orchestrator:policy:active"
Stage = Literal["input", "output"]
STAGES: tuple[Stage, Stage] = ("input", "output")


#: Where a guard model's own labels name no policy category, Llama Guard 3's hazard codes
#: are read as these (S1 violent crimes, S2 non-violent crimes, S4 child sexual
#: exploitation, S7 privacy, S9 indiscriminate weapons, S10 hate, S11 self-harm, S14 code
#: interpreter abuse).
LLAMA_GUARD_CATEGORIES = {
    "S1": "violence", "S2": "cybercrime", "S4": "sexual_minors", "S7": "pii",
    "S9": "weapons", "S10": "hate", "S11": "self_harm", "S14": "cybercrime",
}  # fmt: skip


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    message: str = Field(min_length=1)
    #: Case-insensitive regular expressions, read on the normalised text: for the phrasings
    #: that are harmful beyond doubt.
    rules: list[str] = Field(default_factory=list)
    #: The classifier's score at or above which this category refuses; None: the classifier
    #: never refuses in it.
    threshold: float | None = Field(default=None, gt=0, le=1)

    @field_validator("rules")
    @classmethod
    def _compiles(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            re.compile(rule)  # re.error names the bad pattern
        return rules


class ClassifierLayer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: The version of the trained heads the thresholds were chosen for.
    heads: str = Field(min_length=1)
    stages: list[Stage] = Field(default_factory=lambda: list(STAGES))
    #: A turn that continues a conversation (one with user turns before it) is refused at
    #: each category's threshold plus this, in every reading: a follow-up read alone sounds
    #: more alarming than the request it continues ("now the whole program"), so the same
    #: score means less there. Chosen by training (classifier/train.py); 0 reads every turn
    #: like a first one.
    conversation_margin: float = Field(default=0.0, ge=0, lt=1)


class GuardModel(BaseModel):
    """An OpenAI-compatible chat model that answers `safe` or `unsafe` and a category."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    base_url: HttpUrl
    model: str = Field(min_length=1)
    #: An environment variable holding the bearer key, for servers that want one.
    api_key_env: str | None = None
    #: `llama_guard`: the text alone as the user turn (the server's chat template asks the
    #: question); `instruction`: `instruction` as the system prompt, then the text.
    format: Literal["llama_guard", "instruction"] = "llama_guard"
    instruction: str = ""
    #: Extra request fields the server understands, e.g. llama.cpp's `grammar` or vLLM's
    #: `guided_choice`, to hold the model to the `safe` / `unsafe` answer.
    extra_body: dict[str, Any] = Field(default_factory=dict)
    #: The guard's labels (e.g. Llama Guard's `S9`) mapped to policy categories.
    categories: dict[str, str] = Field(default_factory=lambda: dict(LLAMA_GUARD_CATEGORIES))
    stages: list[Stage] = Field(default_factory=lambda: [STAGES[0]])
    #: Unreachable, too slow or unreadable: `open` allows, `closed` refuses.
    on_error: Literal["open", "closed"]
    #: The guards are asked one after another within the input check's own limit (a local
    #: activity of 10 s), so their timeouts may add up to 8 s at most.
    timeout_seconds: float = Field(default=5.0, gt=0, le=8)


class PiiRedaction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    #: The kinds of personal data replaced by placeholders before a message is stored.
    redact: list[PiiKind] = Field(default_factory=list)


class PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    policy_version: str = Field(min_length=1)
    #: `rules`: the rules alone (policies written before the classifier); `layered`: rules,
    #: then the classifier, then any guard models.
    provider: Literal["rules", "layered"]
    description: str = ""
    classifier: ClassifierLayer | None = None
    guard_models: list[GuardModel] = Field(default_factory=list)
    #: How many earlier user turns of the session the input check reads with the message.
    context_turns: int = Field(default=3, ge=0, le=10)
    pii: PiiRedaction = Field(default_factory=PiiRedaction)
    #: The reply when a fail-closed guard model could not be asked.
    unavailable_message: str = Field(
        default="I can't answer that right now because a safety check is unavailable. "
        "Please try again in a moment.",
        min_length=1,
    )
    categories: dict[str, Category]

    @field_validator("categories")
    @classmethod
    def _taxonomy(cls, categories: dict[str, Category]) -> dict[str, Category]:
        missing = REQUIRED_CATEGORIES - set(categories)
        if missing:
            raise ValueError(f"the policy lacks the categories {sorted(missing)}")
        return categories

    @model_validator(mode="after")
    def _consistent(self) -> PolicyDocument:
        if self.provider == "layered" and self.classifier is None:
            raise ValueError("a layered policy needs its classifier")
        if sum(guard.timeout_seconds for guard in self.guard_models) > 8:
            raise ValueError("the guard models' timeout_seconds add up to more than 8")
        for guard in self.guard_models:
            unknown = set(guard.categories.values()) - set(self.categories)
            if unknown:
                raise ValueError(
                    f"guard model {guard.name} names unknown categories {sorted(unknown)}"
                )
        return self


@dataclass(frozen=True)
class Match:
    category: str
    message: str


class Policy:
    """A loaded policy: its identity (version, hash), its rules compiled, and its settings."""

    def __init__(self, document: PolicyDocument, canonical: bytes) -> None:
        self.document = document
        self.version = document.policy_version
        self.constitution_hash = hashlib.sha256(canonical).hexdigest()
        self._rules = [
            (name, category.message, re.compile(rule, re.IGNORECASE))
            for name, category in document.categories.items()
            for rule in category.rules
        ]

    def first_match(self, text: str) -> Match | None:
        for category, message, pattern in self._rules:
            if pattern.search(text):
                return Match(category, message)
        return None

    def message(self, category: str | None) -> str:
        if category is None:
            return self.document.unavailable_message
        return self.document.categories[category].message

    def thresholds(self) -> dict[str, float]:
        return {
            name: category.threshold
            for name, category in self.document.categories.items()
            if category.threshold is not None
        }

    def headers(self) -> dict[str, str]:
        return {"X-Policy-Version": self.version, "X-Constitution-Hash": self.constitution_hash}


def load_policy(path: Path | None) -> Policy:
    """The policy at `path`, or the bundled one; a bad file stops start-up naming
    ORCH_POLICY_FILE."""
    raw = (
        path.read_bytes()
        if path is not None
        else resources.files("core.policies").joinpath("default.json").read_bytes()
    )
    try:
        parsed = json.loads(raw)
        document = PolicyDocument.model_validate(parsed)
    except ValueError as error:  # JSONDecodeError and ValidationError are ValueErrors
        reason = str(error).splitlines()
        shown = " ".join(line.strip() for line in reason[:3])
        raise ConfigurationError(f"ORCH_POLICY_FILE: not a valid policy: {shown}") from None
    canonical = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return Policy(document, canonical.encode())
