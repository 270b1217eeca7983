"""The one-shot auditors' commands of ``omniledger``: ``verify``, ``export``,
``replay``, ``reconcile``. Each returns its exit code: 0 ok, 1 a finding (a
broken chain, a reconciliation difference), 2 could not run. The parser and
``main`` are in :mod:`ledger.ops.cli`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable
from typing import Any

import asyncpg

from ledger.ops.bootstrap import connect, connect_reads, migrated_store, readable_store
from ledger.ops.settings import Settings

__all__ = ["cmd_export", "cmd_reconcile", "cmd_replay", "cmd_verify"]


async def _connect_reader(settings: Settings, *, pool_size_max: int) -> Any:
    """A pool for a command that only reads: on OMNILEDGER_READ_DATABASE_URL when set,
    said in one line with how far that database is behind its primary."""
    pool = await connect_reads(settings, pool_size_max=pool_size_max)
    if settings.read_database_url:
        from ledger.store.replica import database_label, replica_state

        try:
            state = (await replica_state(pool)).describe()
        except BaseException:
            await pool.close()
            raise
        print(f"omniledger: using the read database {database_label(settings.read_database_url)}"
              f" (OMNILEDGER_READ_DATABASE_URL): {state}", file=sys.stderr)  # fmt: skip
    return pool


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


def cmd_verify(settings: Settings, args: argparse.Namespace) -> Awaitable[int]:
    if args.file:
        return _verify_file(args.file, window=args.window)
    # The helper processes are forked here, before the event loop exists (see ledger.audit.verify).
    from ledger.audit.verify import RANGE_EVENTS_MIN, RangeHelpers

    assert settings.database_url is not None
    processes = args.workers or min(os.cpu_count() or 1, _VERIFY_PROCESSES_MAX)
    url = settings.read_database_url or settings.database_url
    helpers = RangeHelpers.fork(url, processes - 1)
    # --workers N asks for N ranges however short the log: that is how tests cover the split
    range_min = 1 if args.workers else RANGE_EVENTS_MIN
    return _verify_live(settings, helpers, range_min)


#: Enough to keep PostgreSQL busy serving rows; more processes only add connections.
_VERIFY_PROCESSES_MAX = 8


async def _verify_live(settings: Settings, helpers: Any, range_min: int) -> int:
    from ledger.audit.verify import verify_live

    pool = await _connect_reader(settings, pool_size_max=2)
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
        await _record_verify(store, report, head)
    finally:
        await pool.close()
    return _verify_outcome(report)


async def _record_verify(store: Any, report: Any, head: int) -> None:
    """Keeps the outcome for the dasbor's ledger page; an auditor's read-only
    role (or a replica) cannot write it, which does not change the verdict."""
    problems = [] if report.ok else [f"position {report.first_bad_position}: {report.reason}"]
    try:
        await store.record_verify(
            ok=report.ok, events=report.checked, head_position=head, problems=problems
        )
    except asyncpg.PostgresError as e:
        print(f"omniledger verify: outcome not recorded ({e})", file=sys.stderr)


async def _verify_file(path: str, *, window: bool) -> int:
    import itertools

    from ledger.audit.chain import MalformedExport, iter_jsonl, verify_messages
    from ledger.contract.messages import GENESIS_HASH

    if not os.path.isfile(path):  # noqa: ASYNC240 - one stat before the command starts
        # one line naming the file, not a FileNotFoundError: 2, nothing was checked
        print(f"omniledger verify: no export file at {path}", file=sys.stderr)
        return 2
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


async def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from ledger.audit.replay import export_beancount, export_jsonl

    pool = await _connect_reader(settings, pool_size_max=2)
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


async def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    import orjson

    from ledger.audit.replay import replay_balances
    from ledger.domain.commands import parse_timestamp
    from ledger.domain.errors import ValidationError
    from ledger.domain.sellers import seller_stream_id

    try:
        as_of = parse_timestamp(args.as_of, "--as-of")
        known_at = parse_timestamp(args.known_at, "--known-at") if args.known_at else None
    except ValidationError as e:
        print(f"omniledger: {e.message}", file=sys.stderr)
        return 2
    pool = await _connect_reader(settings, pool_size_max=2)
    try:
        store = await readable_store(pool)
        if args.seller and not await store.stream_exists(seller_stream_id(args.seller)):
            # as the API answers 404: zeros for a typo would read as a real balance
            print(f"omniledger replay: seller {args.seller} is not registered", file=sys.stderr)
            return 2
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


async def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    import orjson

    from ledger.app.ledger import Ledger
    from ledger.audit.findings import format_table
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
                dry_run=args.dry_run,
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
