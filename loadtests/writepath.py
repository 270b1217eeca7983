"""The write path's own CPU per event, without HTTP: ``python -m loadtests.writepath``.

A fixed in-process workload, for before/after comparisons on a box that
others load (wall-clock figures swing; this process's CPU per event holds
much better): it creates a fresh database, registers ``--sellers`` sellers,
then records ``order.placed`` facts through ``Ledger`` as the API does:

- ``single``: ``--clients`` tasks, each ``Ledger.record`` of one parsed
  command at a time (a single-event request without its HTTP);
- ``batched``: ``--batch-clients`` tasks, each ``Ledger.record_many`` of
  ``--batch-size`` commands (a batch request without its HTTP).

For each phase it prints one JSON line: events, wall seconds, this process's
CPU (``time.process_time``) per event in microseconds, the part of it the
cyclic garbage collector took, group commits and the
statements the writer sent per group commit. PostgreSQL's own CPU is not in
these figures. The database is dropped at the end.

    python -m loadtests.writepath --events 20000
    py-spy record -o prof.txt --format raw -- python -m loadtests.writepath
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
import uuid
from typing import Any

import asyncpg

from ledger.api.server import tune_collector
from ledger.app.ledger import Ledger
from ledger.domain.commands import parse_command
from ledger.store import LedgerStore
from tests.integration.audit.bench_audit import create, drop

_ADMIN_DSN = os.environ.get(
    "OMNILEDGER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


class _Counted:
    """Counts the statements the writer's connection sends (a round trip each)."""

    def __init__(self) -> None:
        self.statements = 0

    def wrap(self, conn: Any) -> None:
        target = getattr(conn, "_con", conn)  # under a pool's proxy
        for name in ("execute", "fetch", "fetchrow", "fetchval", "executemany"):
            original = getattr(asyncpg.Connection, name)

            def counted(con: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                if con is target:
                    self.statements += 1
                return _original(con, *args, **kwargs)

            setattr(asyncpg.Connection, name, counted)


class _GcTime:
    """The time the cyclic garbage collector takes (it runs inside whatever
    allocates, so a profile blames that line)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


_GC = _GcTime()


def _body(tag: str, phase: str, n: int, sellers: int) -> dict[str, Any]:
    return {
        "idempotency_key": f"op-{tag}{phase}-{n}",
        "type": "order.placed",
        "occurred_at": "2026-11-30T10:00:00+08:00",
        "seller_id": f"wp-{tag}-{n % sellers}",
        "order_id": f"{tag}{phase}-{n}",
        "channel": "qris",
        "amount": "150000",
    }


async def _phase(
    ledger: Ledger,
    counted: _Counted,
    name: str,
    bodies: list[dict[str, Any]],
    *,
    tasks: int,
    per_call: int,
) -> dict[str, Any]:
    calls = [bodies[i : i + per_call] for i in range(0, len(bodies), per_call)]
    work = iter(calls)
    batches0, statements0 = ledger.stats["batches"], counted.statements

    async def client() -> None:
        for call in work:
            if per_call == 1:
                await ledger.record(parse_command(call[0]))
            else:
                outcomes = await ledger.record_many([parse_command(b) for b in call])
                bad = [o for o in outcomes if isinstance(o, BaseException)]
                assert not bad, bad[:3]

    cpu0, wall0, gc0 = time.process_time(), time.perf_counter(), _GC.seconds
    await asyncio.gather(*(client() for _ in range(tasks)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    batches = ledger.stats["batches"] - batches0
    return {
        "phase": name,
        "events": len(bodies),
        "wall_s": round(wall, 3),
        "cpu_us_per_event": round(1e6 * cpu / len(bodies), 1),
        "gc_us_per_event": round(1e6 * (_GC.seconds - gc0) / len(bodies), 1),
        "group_commits": batches,
        "events_per_group_commit": round(len(bodies) / max(batches, 1), 1),
        "statements_per_group_commit": round(
            (counted.statements - statements0) / max(batches, 1), 2
        ),
    }


async def main(options: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:6]
    name = f"omniledger_writepath_{tag}"
    dsn = await create(_ADMIN_DSN, name)
    counted = _Counted()
    try:
        pool = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
        assert pool is not None
        store = LedgerStore(pool)
        await store.migrate()
        ledger = Ledger(store)
        ledger.start()
        try:
            await asyncio.gather(*(
                ledger.register_seller(seller_id=f"wp-{tag}-{n}", name=f"s{n}", district=None,
                                       nib=None, channels={}, occurred_at="2026-10-01T08:00:00Z",
                                       fingerprint=b"%d" % n)
                for n in range(options.sellers)
            ))  # fmt: skip
            if options.collector == "tuned":
                tune_collector()  # as `omniledger serve` does once started
            conn = ledger._writer._conn  # the writer's own connection, counted
            assert conn is not None
            counted.wrap(conn)
            for phase in options.phases.split(","):
                single = phase == "single"
                bodies = [_body(tag, phase, n, options.sellers) for n in range(options.events)]
                figures = await _phase(
                    ledger, counted, phase, bodies,
                    tasks=options.clients if single else options.batch_clients,
                    per_call=1 if single else options.batch_size,
                )  # fmt: skip
                print(json.dumps(figures), flush=True)
        finally:
            await ledger.stop()
            await pool.close()
    finally:
        await drop(_ADMIN_DSN, name)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtests.writepath", description=__doc__)
    p.add_argument("--events", type=int, default=20000, help="events per phase")
    p.add_argument("--sellers", type=int, default=100)
    p.add_argument("--clients", type=int, default=64, help="concurrent single-event callers")
    p.add_argument("--batch-clients", type=int, default=16, help="concurrent batch callers")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument(
        "--collector", choices=("tuned", "default"), default="tuned",
        help="the garbage collector as serve tunes it, or CPython's default",
    )  # fmt: skip
    p.add_argument("--phases", default="single,batched", help="comma-separated, in order")
    return p


if __name__ == "__main__":
    asyncio.run(main(_parser().parse_args()))
