"""Baseline for the benchmark: raw batched INSERTs of rows shaped like the ledger's events.

Several asyncpg connections each insert 100 rows per transaction (one
``INSERT ... SELECT FROM unnest(...)``) into a table with the same columns,
primary key and indexes as ``omniledger_events``, for a fixed time. No HTTP,
no decisions, no idempotency, no hash chain, no ordering lock: the most the
database can take of our row shape on this machine, the figure the batched
phase of ``loadtests/bench.py`` is divided by (issue 12 asks for >= 0.35x).

    python -m loadtests.baseline_batched_insert --dsn postgresql://... --duration 10

``--head-lock`` adds what orders our log: each transaction first moves one
head row (``UPDATE ... RETURNING``, the row lock held to COMMIT), so the
transactions run one at a time as the ledger's group commits do. Its
transactions per second, times the events per transaction, is the ceiling of
one ledger under one head lock (docs/capacity.md).

Prints one JSON line: events, transactions, elapsed_s, events_per_s, per-transaction
latency percentiles, peak RSS. Every loop is bounded by the deadline and ``--events-max``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import resource
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

__all__ = ["main"]

_TABLE = "bench_raw_events"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL,
    hash text NOT NULL,
    prev_hash text NOT NULL,
    seller_id text,
    PRIMARY KEY (originator_id, originator_version)
);
CREATE UNIQUE INDEX IF NOT EXISTS {_TABLE}_notification_id_idx ON {_TABLE} (notification_id);
CREATE INDEX IF NOT EXISTS {_TABLE}_recorded_at_idx ON {_TABLE} (recorded_at);
CREATE INDEX IF NOT EXISTS {_TABLE}_occurred_at_idx ON {_TABLE} (occurred_at);
CREATE INDEX IF NOT EXISTS {_TABLE}_seller_idx ON {_TABLE} (seller_id, notification_id)
    WHERE seller_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS {_TABLE}_head (id boolean PRIMARY KEY, position bigint NOT NULL);
INSERT INTO {_TABLE}_head VALUES (true, 0) ON CONFLICT DO NOTHING;
"""

_MOVE_HEAD = f"UPDATE {_TABLE}_head SET position = position + $1 WHERE id RETURNING position"

_INSERT = f"""
INSERT INTO {_TABLE} (originator_id, originator_version, topic, state, type, occurred_at,
    recorded_at, hash, prev_hash, seller_id)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[], $5::text[],
    $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], $10::text[])
"""

#: The stored state of an order.placed as the ledger writes it (about 400 bytes).
_STATE = orjson.dumps(
    {
        "seller_id": "seller-0001",
        "order_id": "INV-000000000001",
        "channel": "qris",
        "amount_minor": 15000000,
        "currency": "IDR",
        "occurred_at": "2026-11-30T10:00:00+08:00",
        "idempotency_key": "bench-00000000000000000000000000000000",
        "metadata": None,
        "originator_topic": "ledger.domain.orders:Order",
        "timestamp": {"_type_": "datetime_iso", "_data_": "2026-11-30T02:00:00.000000+00:00"},
    }
)
_TOPIC = "ledger.domain.orders:Order.Placed"
_HASH = hashlib.sha256(b"bench").hexdigest()


def _rows(batch_size: int) -> list[list[Any]]:
    now = datetime.now(UTC)
    ids = [uuid.uuid4() for _ in range(batch_size)]
    return [
        ids,
        [1] * batch_size,
        [_TOPIC] * batch_size,
        [_STATE] * batch_size,
        ["order.placed"] * batch_size,
        [now] * batch_size,
        [now] * batch_size,
        [_HASH] * batch_size,
        [_HASH] * batch_size,
        [f"seller-{i % 100:04d}" for i in range(batch_size)],
    ]


async def run(
    dsn: str,
    duration_s: float,
    connections: int,
    batch_size: int,
    events_max: int,
    head_lock: bool = False,
) -> dict[str, Any]:
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    assert pool is not None
    try:
        await pool.execute(_SCHEMA)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_INSERT, *_rows(batch_size))  # warm: plans, pages
        stop_at = time.monotonic() + duration_s
        per_worker_max = max(1, events_max // connections // batch_size)
        latencies: list[float] = []

        async def worker() -> int:
            done = 0
            async with pool.acquire() as conn:
                while done < per_worker_max and time.monotonic() < stop_at:
                    rows = _rows(batch_size)
                    began = time.perf_counter()
                    async with conn.transaction():
                        if head_lock:
                            await conn.fetchval(_MOVE_HEAD, batch_size)
                        await conn.execute(_INSERT, *rows)
                    latencies.append(time.perf_counter() - began)
                    done += 1
            return done

        started = time.monotonic()
        transactions = sum(await asyncio.gather(*(worker() for _ in range(connections))))
        elapsed_s = time.monotonic() - started
    finally:
        await pool.close()
    latencies.sort()
    events = transactions * batch_size
    return {
        "what": (
            f"raw batched INSERT of rows shaped like omniledger_events, {batch_size} rows per"
            f" transaction, {connections} asyncpg connections"
            + (", one head row moved per transaction" if head_lock else "")
        ),
        "events": events,
        "transactions": transactions,
        "elapsed_s": round(elapsed_s, 3),
        "events_per_s": round(events / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "transaction_latency_ms": {
            "p50": _ms(_percentile(latencies, 50)),
            "p99": _ms(_percentile(latencies, 99)),
        },
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[
        min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    ]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--events-max", type=int, default=50_000_000)
    parser.add_argument(
        "--head-lock", action="store_true", help="serialize transactions on one head row"
    )
    args = parser.parse_args(argv)
    result = asyncio.run(
        run(
            args.dsn,
            args.duration,
            args.connections,
            args.batch_size,
            args.events_max,
            args.head_lock,
        )
    )
    print(json.dumps(result), flush=True)
    return 0 if result["events"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
