"""Reading Server-Sent Events as a client does (the WHATWG parsing rules we rely on)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Event:
    event: str
    id: str | None
    data: Any


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """Each event of a `text/event-stream` response; comment lines (keep-alives) skipped."""
    fields: dict[str, list[str]] = {}
    async for line in response.aiter_lines():
        if line == "":
            if fields:
                data = "\n".join(fields.get("data", []))
                yield Event(
                    event=fields.get("event", ["message"])[-1],
                    id=fields.get("id", [None])[-1],  # type: ignore[list-item]
                    data=json.loads(data) if data else None,
                )
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))


def text(received: list[Event]) -> str:
    """The reply as a client shows it: tokens joined, dropping what a `retract` takes back."""
    shown: list[str] = []
    for item in received:
        if item.event == "retract":
            shown = []
        elif item.event == "token":
            shown.append(item.data["delta"])
    return "".join(shown)


def ids_in_order(received: list[Event], turn: int) -> None:
    """Every event has an id `<turn>-<seq>`, increasing, never twice (docs/interface.md,
    section 4)."""
    ids = [e.id for e in received]
    assert all(i is not None and i.startswith(f"{turn}-") for i in ids), ids
    seqs = [int(i.split("-")[1]) for i in ids if i]
    assert seqs == sorted(set(seqs)), ids
