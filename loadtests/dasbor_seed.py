"""Read models at the dasbor's target volume, and the time of each of its queries.

``python -m loadtests.dasbor_seed --database-url postgresql://.../empty_db [--time]``

Seeds a fresh database (the ledger's schema and every read model's tables,
empty) with 2,000 sellers over Makassar's districts and the read-model rows
that 1,000,000 events leave (issue 14, point 7): the registry, orders and
payouts, balances, the seller and city recaps, the projection positions, and
one recorded verify. The rows are made inside PostgreSQL from
``generate_series`` with a fixed seed (no round trip per row, faster than
COPY from here), and derived from one another as the folds would: the recaps
and balances are sums over the seeded orders, so the pages agree with each
other. No log rows: every dasbor query reads the read models only
(``projections/dasbor_reads.py``); the log's head stays 0, so the pages show
no lag.

480,000 orders over 180 local days, on random sellers and channels: 80% paid
in full, 5% half paid (one capture each), 6% refunded (5% in full), 8%
cancelled unpaid; each registration and curation counts as an event, and
payouts make up the rest of the 1,000,000.

``--time`` then calls each ``dasbor_reads`` function (and the seller page's
balance and 30-day recap) 20 times after 3 warm-up calls and prints the
median and the slowest in ms, as a Markdown table (BENCHMARKS.md, issue 14).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any, Final

import asyncpg

from ledger.domain.commands import CHANNELS
from ledger.domain.districts import MAKASSAR_DISTRICTS
from ledger.store import LedgerStore
from projections import catalog, dasbor_reads, reads
from projections.schema import ensure_schema

SELLERS: Final = 2000
EVENTS: Final = 1_000_000
ORDERS: Final = 480_000
DAYS: Final = 180
FIRST_DAY: Final = date(2026, 6, 1)
RUNS: Final = 20
WARM_UP: Final = 3
_ZONE: Final = "Asia/Makassar"


def _steps() -> list[tuple[str, str]]:
    districts = "ARRAY[" + ", ".join(f"'{d}'" for d in MAKASSAR_DISTRICTS) + "]"
    channels = "ARRAY[" + ", ".join(f"'{c}'" for c in sorted(CHANNELS)) + "]"
    local_day = f"(placed_at AT TIME ZONE '{_ZONE}')::date"
    return [
        ("seed", "SELECT setseed(0.14)"),
        (
            f"registry: {SELLERS:,} sellers",
            f"""INSERT INTO proj_registry
                SELECT 's' || lpad(i::text, 4, '0'), 'Toko ' || i,
                       ({districts})[1 + i % {len(MAKASSAR_DISTRICTS)}],
                       CASE WHEN r < 0.5 THEN 'verified' WHEN r < 0.8 THEN 'pending'
                            ELSE 'rejected' END,
                       nib, ARRAY[]::text[], nib, random() < 0.4, random() < 0.3,
                       random() < 0.1, random() < 0.05, i + 1
                FROM (SELECT i, random() AS r, random() < 0.6 AS nib
                      FROM generate_series(0, {SELLERS - 1}) i) s""",
        ),
        (
            f"orders: {ORDERS:,}",
            f"""INSERT INTO proj_orders
                SELECT ch, 'o' || g, 's' || lpad(sid::text, 4, '0'), 'IDR', amount,
                       CASE WHEN r < 0.80 THEN amount WHEN r < 0.85 THEN amount / 2 ELSE 0 END,
                       CASE WHEN r < 0.05 THEN amount WHEN r < 0.06 THEN amount / 4 ELSE 0 END,
                       r >= 0.92,
                       timestamptz '{FIRST_DAY}T00:00:00+08:00'
                           + random() * interval '{DAYS} days'
                FROM (SELECT g, floor(random() * {SELLERS})::int AS sid,
                             ({channels})[1 + floor(random() * {len(CHANNELS)})::int] AS ch,
                             (1 + floor(random() * 5000))::bigint * 100000 AS amount,
                             random() AS r
                      FROM generate_series(1, {ORDERS}) g) o""",
        ),
        (
            "payouts: the rest of the events",
            f"""INSERT INTO proj_payouts
                SELECT 's' || lpad(floor(random() * {SELLERS})::int::text, 4, '0'),
                       {EVENTS} - n + g, 'trf-' || g, 'IDR',
                       (1 + floor(random() * 100))::bigint * 100000,
                       timestamptz '{FIRST_DAY}T00:00:00+08:00'
                           + (g::float / n) * interval '{DAYS} days'
                FROM (SELECT {EVENTS} - {SELLERS} - (SELECT count(*) FROM proj_registry
                                                      WHERE status <> 'pending')
                             - (SELECT count(*) + count(*) FILTER (WHERE captured_minor > 0)
                                + count(*) FILTER (WHERE refunded_minor > 0)
                                + count(*) FILTER (WHERE cancelled) FROM proj_orders) AS n) c,
                     generate_series(1, n) g""",
        ),
        (
            "balances, orders' pending",
            """INSERT INTO proj_balance_orders
                SELECT channel, order_id, seller_id, currency, amount_minor, captured_minor,
                       NOT cancelled FROM proj_orders""",
        ),
        (
            "balances",
            f"""INSERT INTO proj_balances
                SELECT r.seller_id, 'IDR',
                       coalesce(o.pending, 0), coalesce(o.captured, 0), coalesce(o.refunded, 0),
                       coalesce(o.fees, 0), coalesce(p.paid_out, 0), {EVENTS}
                FROM proj_registry r
                LEFT JOIN (SELECT seller_id,
                                  sum(amount_minor - captured_minor)
                                      FILTER (WHERE NOT cancelled) AS pending,
                                  sum(captured_minor) AS captured,
                                  sum(refunded_minor) AS refunded,
                                  sum(captured_minor * 7 / 1000) AS fees
                           FROM proj_orders GROUP BY seller_id) o USING (seller_id)
                LEFT JOIN (SELECT seller_id, sum(amount_minor) AS paid_out
                           FROM proj_payouts GROUP BY seller_id) p USING (seller_id)""",
        ),
        (
            "seller recaps",
            f"""INSERT INTO proj_seller_daily
                SELECT seller_id, {local_day}, channel, currency, count(*), sum(amount_minor),
                       count(*) FILTER (WHERE captured_minor > 0), sum(captured_minor),
                       count(*) FILTER (WHERE refunded_minor > 0), sum(refunded_minor),
                       sum(captured_minor * 7 / 1000)
                FROM proj_orders GROUP BY 1, 2, 3, 4""",
        ),
        (
            "city: sellers",
            "INSERT INTO proj_city_sellers SELECT seller_id, district FROM proj_registry",
        ),
        (
            "city: per channel",
            """INSERT INTO proj_city_daily
                SELECT day, channel, currency, sum(orders), sum(order_value_minor), sum(payments),
                       sum(captured_minor), sum(refunds), sum(refunded_minor), sum(fees_minor)
                FROM proj_seller_daily GROUP BY 1, 2, 3""",
        ),
        (
            "city: per district",
            """INSERT INTO proj_city_district_daily
                SELECT d.day, r.district, d.currency, sum(orders), sum(order_value_minor),
                       sum(payments), sum(captured_minor), sum(refunds), sum(refunded_minor),
                       sum(fees_minor)
                FROM proj_seller_daily d JOIN proj_registry r USING (seller_id)
                GROUP BY 1, 2, 3""",
        ),
        (
            "city: active sellers",
            """INSERT INTO proj_city_active_sellers
                SELECT DISTINCT d.day, d.seller_id, r.district
                FROM proj_seller_daily d JOIN proj_registry r USING (seller_id)""",
        ),
        (
            "city: active sellers per day and district",
            """INSERT INTO proj_city_active_counts
                SELECT day, district, count(*) FROM proj_city_active_sellers GROUP BY 1, 2""",
        ),
        (
            "positions, a verify",
            f"""UPDATE projection_positions SET position = {EVENTS}, updated_at = now();
                INSERT INTO verify_runs (ok, events, head_position)
                    VALUES (true, {EVENTS}, {EVENTS})""",
        ),
        ("analyze", "ANALYZE"),
    ]


async def seed(pool: asyncpg.Pool) -> None:
    await LedgerStore(pool).migrate()
    models = [catalog.projection(n) for n in catalog.PROJECTION_NAMES]
    await ensure_schema(pool, models)
    if await pool.fetchval("SELECT EXISTS (SELECT 1 FROM proj_registry)"):
        raise SystemExit("dasbor_seed: the database already holds sellers; give it a fresh one")
    async with pool.acquire() as conn:
        for label, sql in _steps():
            started = time.perf_counter()
            await conn.execute(sql)
            print(f"  {label}: {time.perf_counter() - started:.1f} s", flush=True)
    counts = {
        t: await pool.fetchval(f"SELECT count(*) FROM {t}")
        for t in ("proj_registry", "proj_orders", "proj_payouts", "proj_seller_daily",
                  "proj_city_active_sellers")
    }  # fmt: skip
    print("rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()), flush=True)


async def _median_ms(call: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    for _ in range(WARM_UP):
        await call()
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


async def time_reads(pool: asyncpg.Pool) -> None:
    busiest = await pool.fetchval(
        "SELECT seller_id FROM proj_orders GROUP BY seller_id ORDER BY count(*) DESC LIMIT 1"
    )
    last = FIRST_DAY + timedelta(days=DAYS - 1)
    month = last - timedelta(days=29)
    cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("seller_registry() (first 100)", lambda: dasbor_reads.seller_registry(pool)),
        ("seller_registry(district, lacking=halal)",
         lambda: dasbor_reads.seller_registry(pool, district="Tamalate", lacking="halal")),
        ("seller_registry(status=pending, offset=1000)",
         lambda: dasbor_reads.seller_registry(pool, status="pending", offset=1000)),
        ("certification_counts()", lambda: dasbor_reads.certification_counts(pool)),
        ("certification_counts(district)",
         lambda: dasbor_reads.certification_counts(pool, district="Tamalate")),
        ("city_recap_range(30 days)", lambda: dasbor_reads.city_recap_range(pool, month, last)),
        (f"city_recap_range({DAYS} days, all)",
         lambda: dasbor_reads.city_recap_range(pool, FIRST_DAY, last)),
        ("seller_orders(busiest seller, 50)", lambda: dasbor_reads.seller_orders(pool, busiest)),
        ("seller_payouts(busiest seller, 50)",
         lambda: dasbor_reads.seller_payouts(pool, busiest)),
        ("last_verify()", lambda: dasbor_reads.last_verify(pool)),
        ("reads.seller_balance (seller page)", lambda: reads.seller_balance(pool, busiest)),
        ("reads.seller_recaps(30 days) (seller page)",
         lambda: reads.seller_recaps(pool, busiest, month, last)),
    ]  # fmt: skip
    print(f"\n| query | median ms | slowest ms (of {RUNS}) |\n|---|--:|--:|")
    for label, call in cases:
        median, slowest = await _median_ms(call)
        print(f"| `{label}` | {median:.1f} | {slowest:.1f} |", flush=True)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.dasbor_seed", description=__doc__)
    parser.add_argument("--database-url", required=True, help="an empty database")
    parser.add_argument("--time", action="store_true", help="then time the dasbor's queries")
    parser.add_argument("--time-only", action="store_true", help="time a database seeded before")
    args = parser.parse_args(argv)
    pool = await asyncpg.create_pool(args.database_url, min_size=1, max_size=2)
    try:
        if not args.time_only:
            started = time.perf_counter()
            print(f"seeding {SELLERS:,} sellers and {EVENTS:,} events' read-model rows")
            await seed(pool)
            print(f"seeded in {time.perf_counter() - started:.0f} s")
        if args.time or args.time_only:
            await time_reads(pool)
    finally:
        await pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
