"""The ``omniledger`` command line: ``up``, ``serve``, ``relay``, ``project``, the audit commands.

Each command builds ``Settings`` from the environment once and hands it to
the parts. Here: the parser and ``main``; the commands run in
:mod:`ledger.ops.cli_services` (the long-running ones, and ``migrate``) and
:mod:`ledger.ops.cli_audit` (``verify``, ``export``, ``replay``,
``reconcile``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from ledger.ops.bootstrap import SchemaNotReady
from ledger.ops.cli_audit import cmd_export, cmd_reconcile, cmd_replay, cmd_verify
from ledger.ops.cli_services import (
    cmd_migrate,
    cmd_project,
    cmd_relay,
    cmd_serve,
    cmd_up,
    freeze_startup,
)
from ledger.ops.data_dir import remembered_env
from ledger.ops.embedded import EmbeddedServerError
from ledger.ops.settings import Settings, SettingsError
from ledger.ops.workers import WORKERS_MAX

log = logging.getLogger("omniledger")

__all__ = ["main"]


def _setup_logging(level: str, command: str) -> None:
    # the command in every line: `up` runs `relay` and `project` as children
    # that log to the same terminal
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format=f"%(asctime)s %(levelname)-7s [{command}] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("asyncpg.pool").addFilter(_without_traceback)


def _without_traceback(record: logging.LogRecord) -> bool:
    """asyncpg's pool warns with a traceback each time it cannot reconnect (the
    database restarting, `up` killed): the reason, on the same line, is enough."""
    if record.levelno <= logging.WARNING and record.exc_info:
        reason = record.exc_info[1]
        record.msg = f"{record.getMessage()} ({type(reason).__name__}: {reason})"
        record.args = None
        record.exc_info = None
        record.exc_text = None
    return True


Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]
#: ``add(name, help, run)``: a subcommand that runs ``run``; returns its parser
_Add = Callable[[str, str, Command], argparse.ArgumentParser]


def _port(text: str) -> int:
    """A TCP port; argparse's ``choices=range(...)`` listed all 65,536 of them on an error."""
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give 0-65535")
    return int(text)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("omni-ledger")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omniledger", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"omniledger {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, run: Command) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(run=run)
        return p

    # in this order in --help
    _add_service_commands(add)
    add("migrate", "create or upgrade the schema", cmd_migrate)
    _add_audit_commands(add)
    from ledger.ops import bootstrap as wiring

    wiring.add_commands(sub)
    return parser


def _add_service_commands(add: _Add) -> None:
    """``up``, ``serve``, ``relay``, ``project``: the long-running ones."""
    for name, help_text, run in (
        (
            "up",
            "run everything on one machine (embedded PostgreSQL and NATS unless URLs are set)",
            cmd_up,
        ),
        ("serve", "run the HTTP API only", cmd_serve),
        ("relay", "run the relay (log -> JetStream) only", cmd_relay),
        ("project", "run the projection consumers only", cmd_project),
    ):
        p = add(name, help_text, run)
        if name in ("up", "serve"):  # relay and project serve no HTTP
            p.add_argument(
                "--port", type=_port, metavar="PORT", help="HTTP port, 0-65535 (default 8080)",
            )  # fmt: skip
            p.add_argument("--host", help="HTTP address (default 127.0.0.1)")
        if name == "project":
            p.add_argument(
                "--models",
                help="comma-separated read models to run here (default: all); one process "
                "per read model is how projections scale out",
            )
        if name in ("up", "serve"):
            p.add_argument(
                "--workers", type=int, choices=range(1, WORKERS_MAX + 1), metavar="N",
                help=f"API processes sharing the port (SO_REUSEPORT), 1-{WORKERS_MAX} "
                "(default 1); each has its own writer and an equal part of "
                "OMNILEDGER_DB_POOL_SIZE_MAX",
            )  # fmt: skip
        if name == "serve":
            # how --workers starts its children: which one this is (on /healthz)
            p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
        if name == "up":
            p.add_argument(
                "--single-process",
                action="store_true",
                help="run the relay and projections in this process too",
            )


def _add_audit_commands(add: _Add) -> None:
    """``verify``, ``export``, ``replay``, ``reconcile``."""
    p = add("verify", "check the hash chain of the live log or of an export", cmd_verify)
    p.add_argument("--file", help="a JSON Lines export to check instead of the live log")
    p.add_argument(
        "--window",
        action="store_true",
        help="with --file: the export may start after position 1 (export --after N); its "
        "first prev_hash is then taken on trust",
    )
    p.add_argument(
        "--workers",
        type=int,
        choices=range(1, 65),
        metavar="N",
        help="processes verifying ranges of the live log in parallel (default: one per CPU, "
        "at most 8, and only for ranges of 20,000 events or more)",
    )
    p = add("export", "write the log as JSON Lines or a beancount ledger", cmd_export)
    p.add_argument("--after", type=int, default=0, help="start after this position")
    p.add_argument("--until", type=int, default=None, help="stop at this position")
    p.add_argument("--format", choices=("jsonl", "beancount"), default="jsonl")
    p = add("replay", "balances from the log alone, as of a time", cmd_replay)
    p.add_argument("--as-of", required=True, help="RFC 3339 time (by occurred_at)")
    p.add_argument("--known-at", help="only events recorded by this time (by recorded_at)")
    p.add_argument("--seller", help="one seller only")
    p = add("reconcile", "compare a gateway settlement report with the ledger", cmd_reconcile)
    p.add_argument("--gateway", choices=("midtrans", "xendit"), required=True)
    p.add_argument("--report", required=True, help="the settlement report (CSV)")
    p.add_argument("--date", help="local day YYYY-MM-DD (default: today)")
    p.add_argument(
        "--columns",
        nargs="*",
        metavar="FIELD=HEADER",
        help="map our fields (order_id, amount, fee, type, status, time, reference) "
        "to the report's headers",
    )
    p.add_argument("--json", action="store_true", help="JSON even on a terminal")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="compare and print, but record nothing (try a report's columns first)",
    )


def _tune_gc() -> None:
    """Fewer cyclic-GC passes: the writer allocates many short-lived objects per
    event while holding a large, long-lived aggregate cache that every full
    pass would walk again (py-spy showed those passes as ~10% of a batch load)."""
    import gc

    freeze_startup()
    gc.set_threshold(50_000, 20, 100)


def _run(coroutine: Any) -> int:
    """Runs on uvloop where it is installed: a faster event loop, same semantics."""
    _tune_gc()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)  # type: ignore[no-any-return]
    return uvloop.run(coroutine)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = dict(os.environ)
    remembered = None
    if args.command != "up" and not env.get("OMNILEDGER_DATABASE_URL"):
        # the URLs of the embedded servers a running (or earlier) `up` in this
        # data folder wrote down: an auditor's command finds its database
        remembered = remembered_env(Path(env.get("OMNILEDGER_DATA_DIR") or ".omniledger"))
        env = remembered | env
    try:
        settings = Settings.from_env(env)
    except SettingsError as e:
        print(f"omniledger: {e}", file=sys.stderr)
        return 2
    if getattr(args, "port", None) is not None:
        settings = replace(settings, port=args.port)
    if getattr(args, "host", None):
        settings = replace(settings, host=args.host)
    if getattr(args, "models", None):
        from ledger.ops.settings import _models

        try:
            settings = replace(settings, projection_models=_models(args.models))
        except SettingsError as e:
            print(f"omniledger: {e}", file=sys.stderr)
            return 2
    _setup_logging(settings.log_level, args.command)
    if remembered and settings.database_url == remembered.get("OMNILEDGER_DATABASE_URL"):
        print(f"omniledger: using the database of `up` in {settings.data_dir}"
              f" ({settings.database_url})", file=sys.stderr)  # fmt: skip
    needs_db = args.command not in ("up",) and not getattr(args, "file", None)
    if needs_db and settings.database_url is None:
        print(
            "omniledger: OMNILEDGER_DATABASE_URL is not set (only `omniledger up` starts "
            "an embedded PostgreSQL)",
            file=sys.stderr,
        )
        return 2
    try:
        return _run(args.run(settings, args))
    except KeyboardInterrupt:
        return 130
    except (
        OSError, asyncpg.PostgresError, asyncpg.InterfaceError, EmbeddedServerError, SchemaNotReady
    ) as e:  # fmt: skip
        # PostgreSQL unreachable or refusing us, an embedded server that would
        # not start: say so without a traceback, and never with exit 1, which
        # `verify` reserves for "the chain is broken"
        log.debug("%s failed", args.command, exc_info=True)
        print(f"omniledger {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
