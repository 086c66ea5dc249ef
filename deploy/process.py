"""One child process: started in its own process group, waited on until it answers, stopped by pid.

Each child leads its own process group, so stopping it reaches whatever it spawned; on
Linux it also gets SIGTERM if the launcher itself dies, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

from deploy.services import Service

_PR_SET_PDEATHSIG = 1


class ServiceFailed(Exception):
    """A service that did not come up; the message is one line naming it."""


def _die_with_parent() -> None:
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class ManagedProcess:
    def __init__(self, service: Service, log_dir: Path) -> None:
        self.service = service
        self.log_path = log_dir / f"{service.name}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.service.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.service.env},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    async def wait_ready(self) -> None:
        """Poll the service's own readiness check until it passes, it exits, or time runs out."""
        assert self.process is not None
        deadline = time.monotonic() + self.service.start_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise ServiceFailed(self.exit_notice())
            try:
                await self.service.ready()
                return
            except Exception as error:  # noqa: BLE001 - not ready yet: remember why, try again
                last_error = str(error).splitlines()[0] if str(error) else type(error).__name__
            await asyncio.sleep(0.25)
        raise ServiceFailed(
            f"{self.service.name} was not ready after {self.service.start_timeout:.0f}s "
            f"({last_error}); see {self.log_path}"
        )

    async def wait(self) -> int:
        """Wait until the process exits; its return code."""
        assert self.process is not None
        return await self.process.wait()

    def exit_notice(self) -> str:
        """One line: which process exited, how, where its log is, and what to do."""
        assert self.process is not None and self.process.returncode is not None
        code = self.process.returncode
        how = f"was killed by {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
        hint = f"; {self.service.hint}" if self.service.hint else ""
        return f"{self.service.name} (pid {self.process.pid}) {how}; see {self.log_path}{hint}"

    async def stop(self, grace_seconds: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is still there after the grace."""
        if self.process is None or self.process.returncode is not None:
            self._kill_group(signal.SIGKILL)  # a dead leader may have left children
            return
        self._kill_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace_seconds)
        except TimeoutError:
            self._kill_group(signal.SIGKILL)
            await self.process.wait()
        self._kill_group(signal.SIGKILL)

    def _kill_group(self, sig: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)
