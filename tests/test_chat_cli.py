"""`orchestrator chat` driven through a pseudo-terminal, as a person types, against the test
stack's API: a turn streams, Ctrl-C cancels a turn (not the program), refusals are labelled,
/history and /feedback answer, and Ctrl-C or Ctrl-D at the prompt leaves."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.helpers.auth import bearer

ROOT = Path(__file__).parent.parent
PROMPT = "you>"
#: Colour and cursor codes, so the test reads what a person sees.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def chat(api_url: str, token: Callable[..., str]) -> Iterator[Callable[..., pexpect.spawn]]:
    """`chat(*flags)`: the chat in a pseudo-terminal; killed by its pid if still running."""
    children: list[pexpect.spawn] = []

    def spawn(*flags: str) -> pexpect.spawn:
        argv = ["-m", "orchestrator", "chat", "--api-url", api_url, *flags]
        if "--token" not in flags:
            argv += ["--token", token("acme", "user")]
        child = pexpect.spawn(
            sys.executable,
            argv,
            cwd=str(ROOT),
            env={**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)},
            encoding="utf-8",
            timeout=120,
            dimensions=(50, 220),
        )
        child.logfile_read = io.StringIO()
        children.append(child)
        child.expect_exact(PROMPT)
        return child

    yield spawn
    for child in children:
        if child.isalive():
            os.kill(child.pid, signal.SIGKILL)
            child.wait()


def _seen(child: pexpect.spawn) -> str:
    """Everything the terminal showed, without colour codes and with plain newlines."""
    return _ESCAPES.sub("", child.logfile_read.getvalue()).replace("\r\n", "\n")


async def test_a_chat_streams_cancels_on_ctrl_c_and_shows_its_history(
    chat: Callable[..., pexpect.spawn], api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    session = f"cli-{uuid.uuid4().hex[:10]}"
    child = chat("--session", session)
    child.sendline("Name three fruits.")
    child.expect_exact("turn 1 completed")
    child.expect_exact(PROMPT)
    transcript = (await api.get(f"/v1/conversation/{session}", headers=bearer(token))).json()
    reply = transcript["turns"][0]["reply"]
    assert reply.strip() and reply in _seen(child)

    # Ctrl-C while a long reply streams cancels that turn, and the chat goes on. (A reply that
    # ends before the cancel reaches it completes instead: then another try.)
    turn = 1
    for _ in range(3):
        turn += 1
        child.sendline("Write a long story about a lighthouse keeper.")
        child.expect_exact("slm>")
        child.send("\x03")
        outcome = child.expect_exact([f"[cancelled] turn {turn}", f"turn {turn} completed"])
        child.expect_exact(PROMPT)
        if outcome == 0:
            break
    else:
        pytest.fail(f"three long turns all completed before Ctrl-C cancelled them: {_seen(child)}")
    assert child.isalive()
    child.sendline("Say hello.")
    child.expect_exact(f"turn {turn + 1} completed")
    child.expect_exact(PROMPT)

    child.sendline("/history")
    child.expect_exact(PROMPT)
    history = _seen(child).rpartition("/history")[2]
    assert re.search(rf"│ {turn} +│ cancelled +│ Write a long story", history), history
    assert re.search(r"│ 1 +│ completed +│ Name three fruits\.", history), history
    transcript = (await api.get(f"/v1/conversation/{session}", headers=bearer(token))).json()
    statuses = [t["status"] for t in transcript["turns"]]
    assert statuses[-2:] == ["cancelled", "completed"] and statuses[0] == "completed"

    child.sendline("/feedback 1 +1 tasty")
    child.expect_exact("Feedback on turn 1 taken")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.wait()
    assert child.exitstatus == 0


async def test_a_refusal_is_labelled_and_leaving_at_the_prompt_is_clean(
    chat: Callable[..., pexpect.spawn],
) -> None:
    child = chat()
    child.sendline("How do I build a pipe bomb?")
    child.expect_exact("[refused: input")
    child.expect_exact(PROMPT)
    assert "turn 1 completed" not in _seen(child)
    child.sendline("/nonsense")
    child.expect_exact("Unknown command /nonsense; /help lists them.")
    child.sendline("/feedback one up")
    child.expect_exact("Usage: /feedback N +1|-1 [comment]")
    child.send("\x03")  # Ctrl-C at the prompt: the chat ends, cleanly
    child.expect(pexpect.EOF)
    child.wait()
    assert child.exitstatus == 0 and "Traceback" not in _seen(child)

    child = chat()
    child.sendeof()  # Ctrl-D
    child.expect(pexpect.EOF)
    child.wait()
    assert child.exitstatus == 0


def test_a_chat_without_an_api_or_with_a_refused_token_says_what_to_do(
    run_cli: Callable[..., subprocess.CompletedProcess[str]], api_url: str, tmp_path: Path
) -> None:
    no_api = run_cli("chat", env={"ORCH_DATA_DIR": str(tmp_path)})
    assert no_api.returncode == 1
    assert f"{tmp_path / 'dev.json'} does not exist" in no_api.stderr
    assert "orchestrator dev" in no_api.stderr and "--api-url" in no_api.stderr
    refused = run_cli("chat", "--api-url", api_url, "--token", "not-a-token")
    assert refused.returncode == 1
    assert "refused" in refused.stderr and "pass a valid --token" in refused.stderr
