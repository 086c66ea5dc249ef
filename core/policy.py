"""The moderation policy (CONTRACT section 6): a versioned file, its hash, and its rules.

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
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.settings import ConfigurationError

REQUIRED_CATEGORIES = frozenset(
    {
        "violence", "weapons", "self_harm", "hate", "sexual_minors",
        "illicit_drugs", "cybercrime", "prompt_injection", "pii",
    }
)  # fmt: skip
ACTIVE_POLICY_KEY = "orchestrator:policy:active"


class Category(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    message: str = Field(min_length=1)
    rules: list[str] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _compiles(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            re.compile(rule)  # re.error names the bad pattern
        return rules


class PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    policy_version: str = Field(min_length=1)
    provider: Literal["rules"]
    description: str = ""
    categories: dict[str, Category]

    @field_validator("categories")
    @classmethod
    def _taxonomy(cls, categories: dict[str, Category]) -> dict[str, Category]:
        missing = REQUIRED_CATEGORIES - set(categories)
        if missing:
            raise ValueError(f"the policy lacks the categories {sorted(missing)}")
        return categories


@dataclass(frozen=True)
class Match:
    category: str
    message: str


class Policy:
    """A loaded policy: its identity (version, hash) and the compiled rules provider."""

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

    def headers(self) -> dict[str, str]:
        return {"X-Policy-Version": self.version, "X-Constitution-Hash": self.constitution_hash}


def load_policy(path: Path | None) -> Policy:
    """The policy at `path`, or the bundled one; a bad file stops start-up naming ORCH_POLICY_FILE."""
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
