"""Measures `omniledger verify` and `omniledger replay` on a log of 100,000 events.

Not collected by pytest (no ``test_`` prefix). Run from the repository root::

    .venv/bin/python -m tests.integration.audit.bench_audit [--events 100000] [--keep]

It creates a fresh database on the PostgreSQL of the tests
(``OMNILEDGER_TEST_DATABASE_URL`` or ``postgresql://postgres@127.0.0.1:5432/postgres``),
fills it through the real write path (``Ledger.record``, group commit: each
round places 1000 orders concurrently with ``asyncio.gather``, then captures
them, with fees, over 100 sellers and 30 days), then times the real command
line as subprocesses: ``verify``, ``replay --as-of <now>``, ``replay --as-of
<now> --seller ...``, ``export`` (to /dev/null) and, for the start-up cost
alone, ``verify`` on an empty database. The database is dropped at the end
unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from ledger.app.ledger import Ledger
from ledger.domain.commands import parse_command
from ledger.store import LedgerStore
from tests.support.servers import with_database

ROOT = Path(__file__).resolve().parents[3]
OMNILEDGER = str(ROOT / ".venv" / "bin" / "omniledger")
SELLERS = 100
ROUND = 1000


async def fill(dsn: str, events: int) -> tuple[int, float]:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
    assert pool is not None
    store = LedgerStore(pool)
    await store.migrate()
    ledger = Ledger(store)
    ledger.start()
    start = time.perf_counter()
    try:
        tag = uuid.uuid4().hex[:6]
        sellers = [f"bench-{n}-{tag}" for n in range(SELLERS)]
        await asyncio.gather(*(
            ledger.register_seller(seller_id=s, name=s, district="Tamalate", nib=None,
                                   channels={}, occurred_at="2026-10-01T08:00:00+08:00",
                                   fingerprint=s.encode())
            for s in sellers
        ))  # fmt: skip
        written = SELLERS
        base = datetime(2026, 11, 1, tzinfo=UTC)
        n = 0
        while written < events:
            size = min(ROUND, (events - written) // 2 or 1)
            batch = range(n, n + size)
            n += size

            def raw(i: int, kind: str) -> dict[str, str]:
                at = (base + timedelta(seconds=26 * i)).isoformat()
                common = {"idempotency_key": f"{kind}-{i}-{tag}", "order_id": f"o{i}-{tag}",
                          "channel": "qris", "occurred_at": at}  # fmt: skip
                amount = str(1000 * (1 + i % 250))
                if kind == "place":
                    return common | {"type": "order.placed", "seller_id": sellers[i % SELLERS],
                                     "amount": amount}  # fmt: skip
                return common | {"type": "payment.captured", "amount": amount,
                                 "fee": str(7 * (1 + i % 250)), "gateway": "midtrans",
                                 "gateway_ref": f"p{i}-{tag}"}  # fmt: skip

            await asyncio.gather(*(ledger.record(parse_command(raw(i, "place"))) for i in batch))
            written += size
            if written < events:
                await asyncio.gather(
                    *(ledger.record(parse_command(raw(i, "capture"))) for i in batch)
                )
                written += size
            if written % 20_000 < 2 * ROUND:
                print(f"  ... {written} events", file=sys.stderr, flush=True)
    finally:
        await ledger.stop()
    elapsed = time.perf_counter() - start
    head = await pool.fetchval("SELECT position FROM ledger_head")
    await pool.close()
    return int(head), elapsed


def timed(dsn: str, *args: str) -> tuple[float, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNILEDGER_")}
    env |= {"OMNILEDGER_DATABASE_URL": dsn, "OMNILEDGER_LOG_LEVEL": "WARNING"}
    start = time.perf_counter()
    proc = subprocess.run([OMNILEDGER, *args], env=env, cwd=ROOT, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    first = proc.stdout.decode().splitlines()[:1] or proc.stderr.decode().splitlines()[-1:]
    return elapsed, proc.returncode, (first[0] if first else "")[:100]


async def create(admin_dsn: str, name: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


async def drop(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the filled database")
    args = parser.parse_args()
    admin_dsn = os.environ.get(
        "OMNILEDGER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"omniledger_bench_{uuid.uuid4().hex[:8]}"
    empty_name = f"omniledger_bench_empty_{uuid.uuid4().hex[:8]}"
    dsn = asyncio.run(create(admin_dsn, name))
    empty_dsn = asyncio.run(create(admin_dsn, empty_name))
    asyncio.run(_migrate(empty_dsn))  # verify reads the schema, it does not make it
    try:
        print(
            f"filling {name} with {args.events} events through Ledger.record ...", file=sys.stderr
        )
        head, fill_s = asyncio.run(fill(dsn, args.events))
        print(
            f"fill:   {head} events in {fill_s:.1f} s = {head / fill_s:,.0f} events/s (write path)"
        )
        now = datetime.now(UTC).isoformat()
        seller = asyncio.run(_first_seller(dsn))
        baseline, rc, _ = timed(empty_dsn, "verify")
        assert rc == 0
        print(f"start-up (verify on an empty log): {baseline:.2f} s")
        for label, cmd in (
            ("verify", ["verify"]),
            ("replay --as-of now", ["replay", "--as-of", now]),
            ("replay --as-of now --seller", ["replay", "--as-of", now, "--seller", seller]),
            ("export > /dev/null", ["export"]),
        ):
            elapsed, rc, first = timed(dsn, *cmd)
            work = max(elapsed - baseline, 1e-9)
            print(
                f"{label:30s} rc={rc} {elapsed:6.2f} s wall = {head / elapsed:9,.0f} events/s"
                f" ({head / work:9,.0f} events/s without start-up)  | {first}"
            )
    finally:
        asyncio.run(drop(admin_dsn, empty_name))
        if args.keep:
            print(f"kept: {dsn}", file=sys.stderr)
        else:
            asyncio.run(drop(admin_dsn, name))
    return 0


async def _migrate(dsn: str) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        await LedgerStore(pool).migrate()
    finally:
        await pool.close()


async def _first_seller(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval(
            "SELECT seller_id FROM seller_accounts ORDER BY seller_id LIMIT 1"
        ))  # fmt: skip
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
