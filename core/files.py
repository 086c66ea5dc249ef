"""Files a process makes for itself on first use (dev keys)."""

from __future__ import annotations

import os
from pathlib import Path


def write_once(path: Path, content: bytes) -> None:
    """Create `path` with `content` (mode 0600) unless it exists: of processes racing to
    create it, one wins and the others read its file, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_bytes(content)
    staging.chmod(0o600)
    try:
        os.link(staging, path)  # fails if another process won the race: its file stands
    except FileExistsError:
        pass
    finally:
        staging.unlink()
