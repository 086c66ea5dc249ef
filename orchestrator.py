"""The `orchestrator` command: dev, api, worker, setup, token, chat (docs/interface.md,
section 1).

Every failure a user can hit at start-up (a bad setting, a port in use, a missing server)
ends the command with one line on stderr that names it, and exit code 2 or 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from core.errors import DependencyUnavailable
from core.settings import ConfigurationError, Settings, load_settings
from core.telemetry import configure_logging

_DEV_PORT_FLAGS = {
    "api": "--api-port",
    "temporal": "--temporal-port",
    "temporal_ui": "--temporal-ui-port",
    "kafka": "--kafka-port",
    "redis": "--redis-port",
    "slm": "--slm-port",
    "worker_metrics": "--worker-metrics-port",
}


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    from deploy.services import DevPorts

    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="The SLM orchestrator: dev, api, worker, setup, token, chat.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="run the whole product on embedded servers")
    dev.add_argument("--services", action="store_true", help="only the four servers")
    dev.add_argument("--data-dir", type=Path, default=None, help="default: ORCH_DATA_DIR")
    defaults = DevPorts()
    for field, flag in _DEV_PORT_FLAGS.items():
        dev.add_argument(flag, dest=field, type=_port, default=getattr(defaults, field))

    commands.add_parser("api", help="serve the HTTP API (uvicorn)")
    worker = commands.add_parser("worker", help="run the Temporal worker(s)")
    worker.add_argument("--queue", default=None, help="serve only this task queue")

    setup = commands.add_parser(
        "setup", help="create or update the namespace, search attributes and topics"
    )
    setup.add_argument("--dry-run", action="store_true", help="print the changes, make none")

    chat = commands.add_parser("chat", help="chat with the SLM through a running API")
    chat.add_argument("--session", default=None, help="continue this session (default: a new one)")
    chat.add_argument("--tenant", default=None, help="tenant of the dev token (default: acme)")
    chat.add_argument("--api-url", default=None, help="default: ORCH_CHAT_API_URL or dev.json's")
    chat.add_argument("--token", default=None, help="default: ORCH_CHAT_TOKEN or a dev token")
    chat.add_argument("--data-dir", type=Path, default=None, help="default: ORCH_DATA_DIR")

    token = commands.add_parser("token", help="print a signed bearer token for the dev key")
    token.add_argument("--tenant", required=True)
    token.add_argument("--role", required=True, choices=["user", "admin", "operator"])
    token.add_argument("--subject", default=None)
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(
            **({"data_dir": args.data_dir} if getattr(args, "data_dir", None) else {})
        )
    except ConfigurationError as error:
        _fail(f"configuration error: {error}", code=2)
    # The chat owns the terminal: only warnings go to stderr.
    level = "WARNING" if args.command == "chat" else settings.log_level
    configure_logging(level, service=f"orchestrator-{args.command}")
    try:
        _run(args, settings)
    except ConfigurationError as error:
        _fail(f"configuration error: {error}", code=2, started=True)
    except DependencyUnavailable as error:
        _fail(str(error), code=1, started=True)
    except KeyboardInterrupt:
        pass


def _run(args: argparse.Namespace, settings: Settings) -> None:
    if args.command == "dev":
        _dev(args, settings)
    elif args.command == "api":
        from api.server import serve

        serve(settings)
    elif args.command == "worker":
        from worker.main import run_worker

        asyncio.run(run_worker(settings, args.queue))
    elif args.command == "setup":
        from deploy.setup import run_setup

        asyncio.run(run_setup(settings, args.dry_run))
    elif args.command == "token":
        _token(args, settings)
    elif args.command == "chat":
        _chat(args, settings)


def _dev(args: argparse.Namespace, settings: Settings) -> None:
    from deploy.dev import run_dev
    from deploy.process import ServiceFailed
    from deploy.services import DevPorts, MissingBinary

    ports = DevPorts(**{field: getattr(args, field) for field in _DEV_PORT_FLAGS})
    try:
        asyncio.run(run_dev(settings.data_dir, ports, services_only=args.services))
    except (ServiceFailed, MissingBinary) as error:
        _fail(str(error), code=1)


def _token(args: argparse.Namespace, settings: Settings) -> None:
    from core.tokens import TENANT_PATTERN, mint_token

    if not TENANT_PATTERN.fullmatch(args.tenant):
        _fail(f"--tenant must match {TENANT_PATTERN.pattern}, got {args.tenant!r}", code=2)
    if args.ttl <= 0:
        _fail("--ttl must be a positive number of seconds", code=2)
    print(
        mint_token(
            settings,
            tenant=args.tenant,
            roles=[args.role],
            subject=args.subject,
            ttl_seconds=args.ttl,
        )
    )


def _chat(args: argparse.Namespace, settings: Settings) -> None:
    from chat.main import run_chat
    from chat.target import ChatError

    try:
        run_chat(settings, args.api_url, args.token, args.tenant, args.session)
    except ChatError as error:
        _fail(str(error), code=1)


def _fail(message: str, code: int, started: bool = False) -> NoReturn:
    print(f"orchestrator: {message}", file=sys.stderr)
    if not started:
        sys.exit(code)
    # A command that failed once started (the worker, the API) ends here without finalising
    # the interpreter: the native threads of a Temporal runtime it made can race that
    # finalisation, and the process then aborts (SIGABRT, "PyGILState_Release") after the
    # message above. Nothing of a failed start needs finalising; logs are flushed first.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
