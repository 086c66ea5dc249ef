"""Key files: made by a process for itself on first use (dev mode), read only when private."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from core.settings import ConfigurationError


def write_once(path: Path, content: bytes) -> None:
    """Create `path` with `content` (mode 0600) unless it exists: of processes racing to
    create it, one wins and the others read its file, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    # Mode 0600 from its first byte (O_EXCL: never a file that someone placed there first).
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    try:
        os.link(staging, path)  # fails if another process won the race: its file stands
    except FileExistsError:
        pass
    finally:
        staging.unlink()


def read_private(path: Path, variable: str) -> bytes:
    """The content of a key file, refused (naming `variable`) when any user can read it.

    Its group may: Kubernetes mounts a Secret for a pod's `fsGroup` as root-owned and
    group-readable (0440), and that group is the pod's own user."""
    mode = path.stat().st_mode
    if mode & stat.S_IRWXO:
        raise ConfigurationError(
            f"{variable}: {path} can be read by other users (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    return path.read_bytes()


def missing_key(variable: str, path: Path, production: str) -> ConfigurationError:
    """The start-up error for a dev key that is absent outside dev mode."""
    return ConfigurationError(
        f"{variable}: {production}; or, for development only, run `orchestrator dev` or set "
        f"ORCH_DEV_MODE=true to make a dev key at {path}"
    )
