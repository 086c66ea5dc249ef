"""A tenant's own policy: additions over the operator's policy (the floor), never looser.

A tenant's admin may add rules to a category, lower a category's threshold (or give one to
a category the floor leaves to the rules alone), and write its own refusal messages. The
effective policy is the floor with the additions merged: rules joined, the lower threshold,
the tenant's message. Its version names both, `<floor version>+<tenant>.<n>`, and its
constitution hash is that of the merged document, so a verdict, an event or a response
header says exactly which rules decided. The floor can change under it (a new operator
policy): the merge is made again, and is never looser than the new floor either.

The additions are kept in Redis, the current ones and every accepted one before them
(activities/tenant_policy.py writes them, from PolicyChangeWorkflow).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from redis.asyncio import Redis

from core.policy import Category, Policy, PolicyDocument
from core.redis_keys import tenant_policy_key

#: The most rules a tenant may add to one category, and the longest one.
MAX_RULES = 50
MAX_RULE_CHARS = 500


class CategoryAdditions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: list[str] = Field(default_factory=list, max_length=MAX_RULES)
    threshold: float | None = Field(default=None, gt=0, le=1)
    message: str | None = Field(default=None, min_length=1, max_length=1000)

    @field_validator("rules")
    @classmethod
    def _compiles(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            if not 1 <= len(rule) <= MAX_RULE_CHARS:
                raise ValueError(f"a rule is 1 to {MAX_RULE_CHARS} characters")
            try:
                re.compile(rule)
            except re.error as error:
                raise ValueError(f"rule {rule!r} is not a regular expression: {error}") from None
        return rules


class TenantAdditions(BaseModel):
    """What a tenant adds to the floor, by category."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    categories: dict[str, CategoryAdditions] = Field(default_factory=dict)


@dataclass(frozen=True)
class TenantRecord:
    """The tenant's current additions as stored: the n-th accepted change."""

    sequence: int
    additions: TenantAdditions
    changed_at: str
    actor: str
    #: The change (its workflow id) that stored it: a retried store is recognised.
    change_id: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "sequence": self.sequence,
                "additions": self.additions.model_dump(exclude_none=True),
                "changed_at": self.changed_at,
                "actor": self.actor,
                "change_id": self.change_id,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> TenantRecord:
        data = json.loads(raw)
        return cls(
            sequence=int(data["sequence"]),
            additions=TenantAdditions.model_validate(data["additions"]),
            changed_at=str(data["changed_at"]),
            actor=str(data["actor"]),
            change_id=str(data["change_id"]),
        )


def unknown_categories(floor: PolicyDocument, additions: TenantAdditions) -> list[str]:
    """The categories `additions` names that the floor does not have, each said."""
    known = ", ".join(sorted(floor.categories))
    return [
        f"categories.{name}: no such category (the policy has {known})"
        for name in additions.categories
        if name not in floor.categories
    ]


def loosenings(floor: PolicyDocument, additions: TenantAdditions) -> list[str]:
    """What in `additions` would refuse less than the floor, each said as `field: why`;
    empty when the additions only ever refuse more."""
    found = []
    for name, added in additions.categories.items():
        category = floor.categories.get(name)
        if category is None:
            continue  # unknown_categories says it
        if (
            added.threshold is not None
            and category.threshold is not None
            and added.threshold > category.threshold
        ):
            found.append(
                f"categories.{name}.threshold: {added.threshold:g} is above the operator's "
                f"{category.threshold:g}, which would refuse less"
            )
    return found


def effective_policy(floor: Policy, tenant: str, record: TenantRecord | None) -> Policy:
    """The floor with the tenant's additions merged; the floor itself without any."""
    if record is None or not record.additions.categories:
        return floor
    document = floor.document
    categories = dict(document.categories)
    for name, added in record.additions.categories.items():
        base = categories.get(name)
        if base is None:  # a category the floor dropped since: nothing to add to
            continue
        categories[name] = Category(
            message=added.message or base.message,
            rules=[*base.rules, *added.rules],
            threshold=_lower(base.threshold, added.threshold),
        )
    merged = document.model_copy(
        update={
            "policy_version": f"{floor.version}+{tenant}.{record.sequence}",
            "categories": categories,
        }
    )
    canonical = json.dumps(
        merged.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return Policy(merged, canonical.encode())


def _lower(floor: float | None, tenant: float | None) -> float | None:
    if floor is None or tenant is None:
        return floor if tenant is None else tenant
    return min(floor, tenant)


#: Store a change as the tenant's next one, atomically, once: a change already stored (a
#: retried activity) answers its record again. The additions go in as the JSON they are.
STORE = """
local current = redis.call('GET', KEYS[1])
local sequence = 0
if current then
  local record = cjson.decode(current)
  if record.change_id == ARGV[1] then return current end
  sequence = record.sequence
end
local record = '{"actor":' .. cjson.encode(ARGV[4]) .. ',"additions":' .. ARGV[2]
  .. ',"change_id":' .. cjson.encode(ARGV[1]) .. ',"changed_at":' .. cjson.encode(ARGV[3])
  .. ',"sequence":' .. (sequence + 1) .. '}'
redis.call('SET', KEYS[1], record)
redis.call('RPUSH', KEYS[2], record)
return record
"""


def candidate_record(floor: Policy, additions: dict[str, Any], actor: str = "") -> TenantRecord:
    """`additions` as a record not yet stored (sequence 0); ValueError naming what is wrong
    with them, or what in them would loosen the floor."""
    parsed = TenantAdditions.model_validate(additions)
    wrong = unknown_categories(floor.document, parsed) + loosenings(floor.document, parsed)
    if wrong:
        raise ValueError("; ".join(wrong))
    return TenantRecord(0, parsed, "", actor, "")


async def read_record(redis: Redis, tenant: str) -> TenantRecord | None:
    """The tenant's current additions; None when it never set any."""
    raw = await redis.get(tenant_policy_key(tenant))
    return TenantRecord.from_json(raw) if raw else None
