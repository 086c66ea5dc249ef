"""Times as the API and the events show them: ISO 8601, UTC, with a `Z`."""

from __future__ import annotations

from datetime import datetime


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
