"""What a moderation layer found: the one type every layer, built in or remote, returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """Why a text is refused: the category (None when a fail-closed check was unavailable),
    the layer that decided, its score (1.0 for a rule, None for a guard model), and what it
    read: the message alone, or the message with the conversation it continues."""

    category: str | None
    provider: str
    score: float | None
    basis: str = "message"
