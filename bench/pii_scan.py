"""`python -m bench pii`: personal-data redaction (core/moderation/pii.py) takes time linear
in the text, for texts built to make a pattern backtrack.

Each shape is redacted at 16 000 and 64 000 characters (the API's body limit is 64 KiB); the
ratio of the two times is about 4 when the cost is linear and about 16 when it is quadratic.
The baseline, in the same run, is ordinary prose of the same lengths. Also timed: one
message of the longest size the routes take (8 000 characters), per shape.
"""

from __future__ import annotations

import time

from core.moderation import pii

#: Texts that made a pattern backtrack over the whole text (each repeats to any length).
SHAPES: dict[str, str] = {
    "prose (baseline)": "Call me after lunch about the quarterly report, please. ",
    "e-mail local part": "a.",
    "e-mail domain": "x@y.",
    "card digits": "1 ",
    "digits and dashes": "1-",
    "IPv4 dots": "1.",
    "IPv6 colons": "a:",
    "IBAN groups": "AAAA ",
    "phone groups": "(555) ",
}
SHORT, LONG, MESSAGE = 16_000, 64_000, 8_000


def _seconds(text: str, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        pii.redact(text)
        best = min(best, time.perf_counter() - started)
    return best


def _of_length(unit: str, length: int) -> str:
    return (unit * (length // len(unit) + 1))[:length]


def run() -> dict[str, dict[str, float]]:
    return {
        name: {
            "message_ms": _seconds(_of_length(unit, MESSAGE)) * 1000,
            "short_ms": _seconds(_of_length(unit, SHORT)) * 1000,
            "long_ms": _seconds(_of_length(unit, LONG)) * 1000,
        }
        for name, unit in SHAPES.items()
    }


def report(results: dict[str, dict[str, float]]) -> None:
    print(f"redaction, best of 3 (ms); ratio = {LONG // 1000}k / {SHORT // 1000}k, linear ~4")
    print(f"{'shape':20}{'8k chars':>10}{'16k':>10}{'64k':>10}{'ratio':>8}")
    for name, r in results.items():
        ratio = r["long_ms"] / max(r["short_ms"], 1e-6)
        verdict = "" if ratio < 8 else "  superlinear"
        print(
            f"{name:20}{r['message_ms']:10.1f}{r['short_ms']:10.1f}{r['long_ms']:10.1f}"
            f"{ratio:8.1f}{verdict}"
        )
