"""The ``omniledger`` command line: ``up``, ``serve``, ``relay``, ``project``, the audit commands.

Each command builds ``Settings`` from the environment once and hands it to
the parts. Long-running commands stop cleanly on SIGINT/SIGTERM: the HTTP
server first, then the writer, relay and projections, then the embedded
servers, so no process is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import asyncpg

from ledger.ops.bootstrap import (
    SchemaNotReady,
    admin_key_for,
    connect,
    embedded_servers,
    migrated_store,
    readable_store,
)
from ledger.ops.embedded import EmbeddedServerError
from ledger.ops.settings import Settings, SettingsError

if TYPE_CHECKING:
    from aiohttp import web

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


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _run_service(
    settings: Settings,
    *,
    http: bool,
    relay: bool,
    projections: bool,
    announce_key: bool,
    extra: Sequence[Any] = (),
) -> None:
    """Runs the chosen parts in this process until SIGINT/SIGTERM; ``extra``: more
    extensions of the HTTP app (``up`` adds its supervisor's health)."""

    from ledger.api.http import create_app, install_admin_key, serve
    from ledger.app.ledger import Ledger
    from ledger.ops import bootstrap as wiring

    pool = await connect(settings)
    tasks: list[asyncio.Task[Any]] = []
    runner: web.AppRunner | None = None
    ledger: Ledger | None = None
    try:
        store = await migrated_store(pool)
        await wiring.prepare(settings, pool)
        if http:
            key_path = settings.data_dir / "admin.key"
            new_key = not settings.admin_key and not key_path.exists()
            admin_key = admin_key_for(settings)
            await install_admin_key(store, admin_key)
            ledger = Ledger(store, batch_size_max=settings.batch_size_max)
            ledger.start()
            app = create_app(
                settings, ledger, store, extensions=[*wiring.extensions(settings, pool), *extra]
            )
            # with the header/body deadlines and the connection cap of settings
            runner = await serve(app, settings, settings.host, settings.port)
            log.info("serving the API on http://%s:%s", settings.host, settings.port)
            if announce_key and new_key:
                # once, when it is made: a secret does not belong in every start's log
                log.info("admin key (kept in %s): %s", key_path, admin_key)
            elif announce_key and not settings.admin_key:
                log.info("admin key: in %s", key_path)
        if relay:
            tasks.append(asyncio.create_task(wiring.run_relay(settings, pool), name="relay"))
        if projections:
            tasks.append(
                asyncio.create_task(wiring.run_projections(settings, pool), name="projections")
            )
        waiter = asyncio.create_task(_until_signalled())
        await asyncio.sleep(0)  # the parts' first steps: what they import is imported now
        _freeze_startup()
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                log.error("%s stopped: %r", task.get_name(), task.exception())
        log.info("stopping")
        waiter.cancel()
    finally:
        if runner is not None:
            await runner.cleanup()
        for task in tasks:
            task.cancel()
        if tasks:
            # bounded: a task cancelled inside nats-py's connect may swallow the
            # cancellation and go on; the process is ending anyway
            ended, stuck = await asyncio.wait(tasks, timeout=5)
            for task in ended:
                if not task.cancelled():
                    task.exception()  # retrieved: it was logged above if it mattered
            for task in stuck:
                log.warning("%s did not stop within 5 s; leaving it", task.get_name())
        if ledger is not None:
            await ledger.stop()
        await pool.close()
        log.info("stopped")


async def _cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    async with embedded_servers(settings) as live:
        if args.single_process:
            await _run_service(live, http=True, relay=True, projections=True, announce_key=True)
            return 0
        # The relay and the projections run as child processes of their own so
        # that the API's event loop (and its core) serves requests only; they
        # die with this process (PR_SET_PDEATHSIG), even if it is killed, and
        # are started again when they die without it (ledger.ops.supervisor).
        pool = await connect(live, pool_size_max=2)
        try:
            await migrated_store(pool)  # before the children, which need the schema
        finally:
            await pool.close()
        from ledger.ops.bootstrap import supervisor_health
        from ledger.ops.supervisor import Supervisor

        supervisor = Supervisor([_part("relay", live), _part("project", live)])
        await supervisor.start()
        try:
            await _run_service(
                live, http=True, relay=False, projections=False, announce_key=True,
                extra=[supervisor_health(supervisor)],
            )  # fmt: skip
        finally:
            await supervisor.stop()
    return 0


def _part(command: str, settings: Settings) -> Any:
    """How ``up`` runs ``omniledger <command>`` as a child (``ledger.ops.supervisor.ChildSpec``)."""
    from ledger.ops.supervisor import ChildSpec

    env = dict(os.environ)
    env["OMNILEDGER_DATABASE_URL"] = settings.database_url or ""
    env["OMNILEDGER_NATS_URL"] = settings.nats_url or ""
    return ChildSpec(
        command, [sys.executable, "-m", "ledger.ops.cli", command], env, _die_with_parent
    )


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent dies."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: children are still stopped on a clean shutdown
        pass


async def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    await _run_service(settings, http=True, relay=False, projections=False, announce_key=False)
    return 0


async def _cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    await _run_service(settings, http=False, relay=True, projections=False, announce_key=False)
    return 0


async def _cmd_project(settings: Settings, args: argparse.Namespace) -> int:
    await _run_service(settings, http=False, relay=False, projections=True, announce_key=False)
    return 0


async def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    pool = await connect(settings)
    try:
        store = await migrated_store(pool)
        head, _ = await store.head()
        print(f"schema up to date; log head at position {head}")
    finally:
        await pool.close()
    return 0


def _progress(total: int, label: str) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="ev",
        unit_scale=True,
        desc=label,
        file=sys.stderr,
        disable=None,
        mininterval=0.5,
    )


def _cmd_verify(settings: Settings, args: argparse.Namespace) -> Awaitable[int]:
    if args.file:
        return _verify_file(args.file, window=args.window)
    # The helper processes are forked here, before the event loop exists (see ledger.audit.verify).
    from ledger.audit.verify import RANGE_EVENTS_MIN, RangeHelpers

    assert settings.database_url is not None
    processes = args.workers or min(os.cpu_count() or 1, _VERIFY_PROCESSES_MAX)
    helpers = RangeHelpers.fork(settings.database_url, processes - 1)
    # --workers N asks for N ranges however short the log: that is how tests cover the split
    range_min = 1 if args.workers else RANGE_EVENTS_MIN
    return _verify_live(settings, helpers, range_min)


#: Enough to keep PostgreSQL busy serving rows; more processes only add connections.
_VERIFY_PROCESSES_MAX = 8


async def _verify_live(settings: Settings, helpers: Any, range_min: int) -> int:
    from ledger.audit.verify import verify_live

    pool = await connect(settings, pool_size_max=2)
    try:
        store = await readable_store(pool)
        head, _ = await store.head()
        bar = _progress(head, "verify")
        try:
            report = await verify_live(
                store,
                helpers=helpers,
                range_events_min=range_min,
                on_progress=lambda checked: bar.update(checked - bar.n),
            )
        except RuntimeError as e:  # a helper process could not finish its range
            bar.close()
            print(f"omniledger verify: could not verify: {e}", file=sys.stderr)
            return 2
        bar.update(report.checked - bar.n)
        bar.close()
    finally:
        await pool.close()
    return _verify_outcome(report)


async def _verify_file(path: str, *, window: bool) -> int:
    import itertools

    from ledger.audit.chain import MalformedExport, iter_jsonl, verify_messages
    from ledger.contract.messages import GENESIS_HASH

    lines = iter_jsonl(path)
    start_position, start_prev_hash = 1, GENESIS_HASH
    try:
        first = next(lines, None)
    except MalformedExport as e:
        print(f"BROKEN at position 1: {e.message}")
        return 1
    if first is not None:
        lines = itertools.chain([first], lines)
        position = first.get("position")
        if isinstance(position, int) and position > 1:
            if not window:
                # lines cut off the top of a whole export look just like a window
                print(
                    f"BROKEN at position 1: the export starts at position {position}; "
                    "if it is a window (export --after), check it with --window"
                )
                return 1
            # An --after window: it starts where the export says it does;
            # only the live log (omniledger verify) can vouch for that start.
            start_position, start_prev_hash = position, str(first.get("prev_hash"))
            print(
                f"window starting at position {position}: its first prev_hash "
                f"{start_prev_hash} is taken on trust (compare it with the live log)",
                file=sys.stderr,
            )
    bar = _progress(0, "verify")
    report = await asyncio.to_thread(
        verify_messages,
        lines,
        start_position=start_position,
        start_prev_hash=start_prev_hash,
        on_progress=lambda checked, _pos: bar.update(checked - bar.n),
    )
    bar.close()
    return _verify_outcome(report)


def _verify_outcome(report: Any) -> int:
    if report.ok:
        print(f"ok: {report.checked} events, chain intact, last hash {report.last_hash}")
        return 0
    print(
        f"BROKEN at position {report.first_bad_position}: {report.reason} "
        f"({report.checked} events before it are intact)"
    )
    return 1


async def _cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from ledger.audit.replay import export_beancount, export_jsonl

    pool = await connect(settings, pool_size_max=2)
    try:
        store = await readable_store(pool)
        out = sys.stdout
        if args.format == "beancount":
            await export_beancount(
                store, out, timezone=settings.timezone, after=args.after, until=args.until
            )
        else:
            count = await export_jsonl(store, out, after=args.after, until=args.until)
            print(f"exported {count} events", file=sys.stderr)
        out.flush()
    finally:
        await pool.close()
    return 0


async def _cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    import orjson

    from ledger.audit.replay import replay_balances
    from ledger.domain.commands import parse_timestamp
    from ledger.domain.errors import ValidationError

    try:
        as_of = parse_timestamp(args.as_of, "--as-of")
        known_at = parse_timestamp(args.known_at, "--known-at") if args.known_at else None
    except ValidationError as e:
        print(f"omniledger: {e.message}", file=sys.stderr)
        return 2
    pool = await connect(settings, pool_size_max=2)
    try:
        store = await readable_store(pool)
        fold = await replay_balances(store, as_of=as_of, known_at=known_at, seller_id=args.seller)
    finally:
        await pool.close()
    balances = [fold.balance(s, c) for (s, c) in sorted(fold.accounts)]
    if args.seller and not balances:
        balances = [fold.balance(args.seller)]
    sys.stdout.write(
        orjson.dumps(
            {"as_of": args.as_of, "known_at": args.known_at, "balances": balances},
            option=orjson.OPT_INDENT_2,
        ).decode()
        + "\n"
    )
    return 0


async def _cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    import orjson

    from ledger.app.ledger import Ledger
    from ledger.audit.reconcile import format_table
    from ledger.audit.replay import reconcile_report
    from ledger.domain.errors import LedgerError

    try:
        report = await asyncio.to_thread(_read_bytes, args.report)
    except OSError as e:
        print(f"omniledger: cannot read {args.report}: {e.strerror}", file=sys.stderr)
        return 2
    columns: dict[str, str] = {}
    for pair in args.columns or []:
        name, sep, header = pair.partition("=")
        if not sep:
            print(f"omniledger: --columns takes FIELD=HEADER, not {pair!r}", file=sys.stderr)
            return 2
        columns[name.strip()] = header.strip()
    day = args.date or _today(settings)
    pool = await connect(settings, pool_size_max=3)
    ledger = None
    try:
        store = await migrated_store(pool)
        ledger = Ledger(store)
        ledger.start()
        try:
            findings, result = await reconcile_report(
                store,
                ledger,
                gateway=args.gateway,
                day=day,
                report=report,
                timezone=settings.timezone,
                columns=columns or None,
            )
        except LedgerError as e:
            print(f"omniledger: {e.message}", file=sys.stderr)
            return 2
    finally:
        if ledger is not None:
            await ledger.stop()
        await pool.close()
    if args.json or not sys.stdout.isatty():
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_table(findings))
    clean = all(
        not result["findings"].get(k)
        for k in ("missing_in_ledger", "missing_in_report", "amount_mismatch", "fee_mismatch")
    )
    summary = result["summary"]
    elsewhere = summary.get("report_rows_other_days", 0)
    if elsewhere:
        # Midtrans cuts its reports by the WIB day, the ledger's day is local
        # (WITA by default): rows of the report's last hour fall on the next day
        where = f"{day} in {settings.timezone}"
        if not summary.get("report_rows"):
            print(f"omniledger: none of the report's rows falls on {where}: is it the "
                  "report of another day?", file=sys.stderr)  # fmt: skip
            return 1
        print(f"omniledger: {elsewhere} report rows fall on other days than {where} and "
              "were not compared; reconcile those days with this report too",
              file=sys.stderr)  # fmt: skip
    return 0 if clean else 1


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _today(settings: Settings) -> str:
    from datetime import datetime

    return datetime.now(settings.zone).date().isoformat()


Command = Callable[[Settings, argparse.Namespace], Awaitable[int]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omniledger", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str, run: Command) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(run=run)
        return p

    for name, help_text, run in (
        (
            "up",
            "run everything on one machine (embedded PostgreSQL and NATS unless URLs are set)",
            _cmd_up,
        ),
        ("serve", "run the HTTP API only", _cmd_serve),
        ("relay", "run the relay (log -> JetStream) only", _cmd_relay),
        ("project", "run the projection consumers only", _cmd_project),
    ):
        p = add(name, help_text, run)
        p.add_argument(
            "--port", type=int, choices=range(0, 65536), metavar="PORT",
            help="HTTP port, 0-65535 (default 8080)",
        )  # fmt: skip
        p.add_argument("--host", help="HTTP address (default 127.0.0.1)")
        if name == "project":
            p.add_argument(
                "--models",
                help="comma-separated read models to run here (default: all); one process "
                "per read model is how projections scale out",
            )
        if name == "up":
            p.add_argument(
                "--single-process",
                action="store_true",
                help="run the relay and projections in this process too",
            )
    add("migrate", "create or upgrade the schema", _cmd_migrate)
    p = add("verify", "check the hash chain of the live log or of an export", _cmd_verify)
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
    p = add("export", "write the log as JSON Lines or a beancount ledger", _cmd_export)
    p.add_argument("--after", type=int, default=0, help="start after this position")
    p.add_argument("--until", type=int, default=None, help="stop at this position")
    p.add_argument("--format", choices=("jsonl", "beancount"), default="jsonl")
    p = add("replay", "balances from the log alone, as of a time", _cmd_replay)
    p.add_argument("--as-of", required=True, help="RFC 3339 time (by occurred_at)")
    p.add_argument("--known-at", help="only events recorded by this time (by recorded_at)")
    p.add_argument("--seller", help="one seller only")
    p = add("reconcile", "compare a gateway settlement report with the ledger", _cmd_reconcile)
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
    from ledger.ops import bootstrap as wiring

    wiring.add_commands(sub)
    return parser


def _tune_gc() -> None:
    """Fewer cyclic-GC passes: the writer allocates many short-lived objects per
    event while holding a large, long-lived aggregate cache that every full
    pass would walk again (py-spy showed those passes as ~10% of a batch load)."""
    import gc

    _freeze_startup()
    gc.set_threshold(50_000, 20, 100)


def _freeze_startup() -> None:
    """What start-up allocated (modules, app, routes) is never collected: keep it
    out of every GC pass. Called again once a service has imported and started
    its parts, which the command line only imports when it runs them."""
    import gc

    gc.collect()
    gc.freeze()


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
    try:
        settings = Settings.from_env()
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
