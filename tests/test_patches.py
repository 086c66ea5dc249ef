"""workflows/patches.py lists every `workflow.patched` id, and the committed histories it
names as recorded with a patch are exactly those that carry its marker."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from workflows import patches
from workflows.patches import PATCHES

ROOT = Path(__file__).parent.parent
HISTORIES = Path(__file__).parent / "histories"


def _markers(path: Path) -> set[str]:
    """The patch ids whose markers a history recorded."""
    found = set()
    for event in json.loads(path.read_text())["events"]:
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker.get("markerName") == "core_patch":
            for payloads in marker["details"].values():
                for payload in payloads["payloads"]:
                    found.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return found


def test_every_patched_call_uses_a_listed_patch() -> None:
    used = set()
    for source in (ROOT / "workflows").rglob("*.py"):
        text = source.read_text()
        used |= set(re.findall(r"workflow\.patched\(\s*(\w+)\.id\s*\)", text))
        assert not re.search(r"workflow\.patched\(\s*[\"']", text), source
    names = {name for name, value in vars(patches).items() if value in PATCHES}
    assert used == names
    assert len({patch.id for patch in PATCHES}) == len(PATCHES)


def test_each_patch_names_the_histories_that_carry_its_marker() -> None:
    markers = {path.stem: _markers(path) for path in HISTORIES.glob("*.json")}
    for patch in PATCHES:
        carrying = {name for name, ids in markers.items() if patch.id in ids}
        assert set(patch.recorded_in) == carrying, patch.id
    listed = {patch.id for patch in PATCHES}
    assert set().union(*markers.values()) <= listed
