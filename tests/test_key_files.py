"""Key files a process makes for itself (dev mode) are private from their first byte, and of
processes racing to make one, one wins and every one reads its file."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.files import write_once


def test_a_key_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)  # a umask that would leave a plain write readable by all
    try:
        write_once(tmp_path / "keys" / "key.pem", b"secret")
    finally:
        os.umask(previous)
    made = tmp_path / "keys" / "key.pem"
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert [p.name for p in made.parent.iterdir()] == ["key.pem"]  # no staging file left


def test_of_racing_writers_one_wins_and_the_rest_keep_its_file(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: write_once(path, f"key {n}".encode()), range(32)))
    assert path.read_bytes().startswith(b"key ")
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]
