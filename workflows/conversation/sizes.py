"""Bytes, as Temporal will store them: what the session keeps, carries and answers is capped by
size, not by count, so no payload nears Temporal's limit (2 MB) whatever users write.

Workflow code: sizes are those of the workflow's payload converter (before encryption, which
adds a fixed 28 bytes and a key id to each payload).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from temporalio import workflow

T = TypeVar("T")

KIB = 1024


def encoded_size(value: object) -> int:
    """The bytes of `value` as one payload."""
    return len(workflow.payload_converter().to_payloads([value])[0].data)


def latest_within(items: Sequence[T], budget: int) -> list[T]:
    """The latest of `items` whose payloads fit in `budget` bytes together (oldest first)."""
    kept: list[T] = []
    for item in reversed(items):
        budget -= encoded_size(item)
        if budget < 0:
            break
        kept.append(item)
    kept.reverse()
    return kept
