"""Measures ``GET /v1/sellers/{id}/balance?as_of=`` on a long log, and what looping
time-travel readers do to the writers (issue 10, finding 8).

Not collected by pytest (no ``test_`` prefix). Run from the repository root::

    .venv/bin/python -m tests.integration.audit.bench_as_of [--events 100000] [--keep]
    .venv/bin/python -m tests.integration.audit.bench_as_of --dsn <a database bench_audit kept>

It fills a fresh database like ``bench_audit`` (100 sellers, the real write
path) or takes ``--dsn``, migrates it (timed: the seller index is built
then), adds one seller with 10 events of its own, and serves the app (core
and audit routes) on 127.0.0.1 in this process. Then, one request at a time,
it times as-of reads of a bench seller (1% of the log) and of the small
seller; then, for ``--load-s`` seconds each, 16 looping writers
(``POST /v1/events``) alone, and the same writers beside 4 readers looping on
``?as_of=`` without any pause (what one seller key can do). Every loop is
bounded in time; all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from ledger.api.http import create_app, install_admin_key
from ledger.app.ledger import Ledger
from ledger.audit.routes import AuditRoutes
from ledger.domain.commands import parse_command
from ledger.ops.settings import Settings
from ledger.store import LedgerStore
from tests.integration.audit.bench_audit import create, drop, fill

ADMIN = "bench-as-of-admin"
WRITERS = 16
READERS = 4


async def measure(dsn: str, load_s: float) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
    assert pool is not None
    store = LedgerStore(pool)
    start = time.perf_counter()
    applied = await store.migrate()
    print(f"migrate: applied {applied or 'nothing'} in {time.perf_counter() - start:.2f} s")
    await install_admin_key(store, ADMIN)
    head = await pool.fetchval("SELECT position FROM ledger_head")
    big = str(await pool.fetchval("SELECT seller_id FROM seller_accounts ORDER BY 1 LIMIT 1"))
    ledger = Ledger(store)
    ledger.start()
    tag = uuid.uuid4().hex[:6]
    small = f"small-{tag}"
    await ledger.register_seller(
        seller_id=small, name=small, district="Tamalate", nib=None, channels={},
        occurred_at="2026-10-01T08:00:00+08:00", fingerprint=small.encode(),
    )  # fmt: skip
    for i in range(3):
        common = {"order_id": f"sm{i}-{tag}", "channel": "qris", "amount": "10000",
                  "occurred_at": "2026-11-02T08:00:00+08:00"}  # fmt: skip
        await ledger.record(parse_command(
            common | {"idempotency_key": f"smp{i}-{tag}", "type": "order.placed",
                      "seller_id": small}))  # fmt: skip
        await ledger.record(parse_command(
            common | {"idempotency_key": f"smc{i}-{tag}", "type": "payment.captured",
                      "gateway": "midtrans", "gateway_ref": f"sm{i}-{tag}"}))  # fmt: skip
    settings = Settings(database_url=dsn, admin_key=ADMIN)
    app = create_app(settings, ledger, store, extensions=[AuditRoutes()])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    try:
        async with ClientSession(base_url=str(server.make_url("/"))) as http:

            async def read(seller: str) -> int:
                async with http.get(
                    f"/v1/sellers/{seller}/balance", params={"as_of": now}, headers=headers
                ) as resp:
                    await resp.read()
                    return resp.status

            print(f"log: {head} events; bench seller {big}, small seller {small} (9 events)")
            for label, seller in (("bench seller", big), ("small seller", small)):
                times = []
                for _ in range(10):
                    t = time.perf_counter()
                    assert await read(seller) == 200
                    times.append(time.perf_counter() - t)
                print(
                    f"as-of read, {label:12s}: median {statistics.median(times) * 1000:7.1f} ms"
                    f"  max {max(times) * 1000:7.1f} ms  (10 reads, one at a time)"
                )

            async def writer(
                n: int, phase: int, until: float, latencies: list[float], answers: dict[int, int]
            ) -> None:
                i = 0
                while time.perf_counter() < until:
                    i += 1
                    body = {"type": "order.placed", "idempotency_key": f"w{n}-{i}-{tag}-{phase}",
                            "seller_id": small, "order_id": f"w{n}-{i}-{tag}-{phase}",
                            "channel": "qris", "amount": "1000",
                            "occurred_at": "2026-11-03T08:00:00+08:00"}  # fmt: skip
                    t = time.perf_counter()
                    async with http.post("/v1/events", json=body, headers=headers) as resp:
                        await resp.read()
                        answers[resp.status] = answers.get(resp.status, 0) + 1
                        if resp.status == 201:
                            latencies.append(time.perf_counter() - t)

            async def reader(until: float, statuses: dict[int, int]) -> None:
                while time.perf_counter() < until:
                    status = await read(big)
                    statuses[status] = statuses.get(status, 0) + 1

            for readers in (0, READERS):
                latencies: list[float] = []
                statuses: dict[int, int] = {}
                answers: dict[int, int] = {}
                until = time.perf_counter() + load_s
                started = time.perf_counter()
                await asyncio.gather(
                    *(writer(n, readers, until, latencies, answers) for n in range(WRITERS)),
                    *(reader(until, statuses) for _ in range(readers)),
                )
                p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
                print(
                    f"{load_s:.0f} s, {WRITERS} writers, {readers} as-of readers:"
                    f" {len(latencies)} writes acknowledged, write p50 {p50:.1f} ms"
                    f" (writer answers {dict(sorted(answers.items()))});"
                    f" reader answers {dict(sorted(statuses.items()))};"
                    f" the last answer came after {time.perf_counter() - started:.1f} s"
                )
    finally:
        await server.close()
        await ledger.stop()
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--dsn", help="an already filled database (not dropped)")
    parser.add_argument("--load-s", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the filled database")
    args = parser.parse_args()
    if not 1 <= args.load_s <= 60:
        parser.error("--load-s must be between 1 and 60")
    if args.dsn:
        asyncio.run(measure(args.dsn, args.load_s))
        return 0
    admin_dsn = os.environ.get(
        "OMNILEDGER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"omniledger_bench_{uuid.uuid4().hex[:8]}"
    dsn = asyncio.run(create(admin_dsn, name))
    try:
        print(f"filling {name} with {args.events} events ...", file=sys.stderr)
        asyncio.run(fill(dsn, args.events))
        asyncio.run(measure(dsn, args.load_s))
    finally:
        if args.keep:
            print(f"kept: {dsn}", file=sys.stderr)
        else:
            asyncio.run(drop(admin_dsn, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
