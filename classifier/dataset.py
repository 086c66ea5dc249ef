"""The labelled moderation set in `data/`: what the heads are trained on and measured by.

`train/<set>.jsonl` trains the heads and tunes the thresholds; `heldout/<set>.jsonl` was
written apart from it and is only ever measured (see `data/README.md`). A line's `batch`
names the lot it was written in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
SETS = ("harmful", "jailbreak", "benign", "hard_benign")


@dataclass(frozen=True)
class Example:
    text: str
    label: str  # a policy category, or "benign"
    set: str  # one of SETS
    style: str
    source: str
    #: The lot it was written in (data/README.md), e.g. "harmful_ninth" or "injection".
    batch: str = ""

    @property
    def harmful(self) -> bool:
        return self.label != "benign"


def load(split: str) -> list[Example]:
    """Every example of `split` ("train" or "heldout"), in file order."""
    examples: list[Example] = []
    for path in sorted((DATA / split).glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                examples.append(Example(**json.loads(line)))
            except (ValueError, TypeError) as error:
                raise SystemExit(f"{split}/{path.name}:{number}: not an example: {error}") from None
    if not examples:
        raise SystemExit(f"no {split}/*.jsonl in {DATA}")
    return examples
