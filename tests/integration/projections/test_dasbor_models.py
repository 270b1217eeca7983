"""The dasbor's read models (registry; orders and payouts) fed by the real ledger through
the real relay and stream, then rebuilt from the log and checked against it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from ledger.app.ledger import Ledger
from ledger.domain.commands import parse_command
from ledger.relay.relay import Relay, RelayConfig
from ledger.store import LedgerStore
from projections import catalog, rebuild, run_projections
from projections.check import check_projection
from tests.integration.projections.harness import Stream, stored_position, until

AT = "2026-12-01T10:00:00+08:00"


@pytest.fixture
async def ledger(pool: asyncpg.Pool) -> AsyncIterator[Ledger]:
    store = LedgerStore(pool)
    await store.migrate()
    service = Ledger(store)
    service.start()
    yield service
    await service.stop()


async def register(ledger: Ledger, seller_id: str, district: str | None, nib: str | None) -> None:
    await ledger.register_seller(seller_id=seller_id, name=f"Toko {seller_id}", district=district,
                                 nib=nib, channels={}, occurred_at=AT,
                                 fingerprint=seller_id.encode())  # fmt: skip


async def record(ledger: Ledger, n: int, **raw: Any) -> None:
    await ledger.record(parse_command(raw | {"idempotency_key": f"k{n}", "occurred_at": AT}))


async def project(
    pool: asyncpg.Pool, stream: Stream, pg_dsn: str, schema_name: str, nats_url: str,
    names: Sequence[str],
) -> None:  # fmt: skip
    """Runs the relay and the projections ``names`` until they reach the log's head."""
    relay = Relay(
        pool, RelayConfig(nats_url=nats_url, stream_name=stream.name, subject_prefix=stream.prefix)
    )
    stop = asyncio.Event()
    search_path = f"options=-csearch_path%3D{schema_name}"
    tasks = [
        asyncio.create_task(relay.run()),
        asyncio.create_task(
            run_projections(
                stop=stop,
                database_url=f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}{search_path}",
                nats_url=nats_url,
                stream=stream.name,
                subject_prefix=stream.prefix,
                names=names,
            )
        ),
    ]
    head, _ = await LedgerStore(pool).head()

    async def caught_up() -> bool:
        try:
            return all([await stored_position(pool, n) == head for n in names])
        except asyncpg.UndefinedTableError:
            return False

    try:
        await until(caught_up, timeout_s=30)
    finally:
        stop.set()
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def rebuilt_and_checked(pool: asyncpg.Pool, name: str) -> None:
    """A rebuild from the log gives the same rows, and check-projections finds no drift."""
    store = LedgerStore(pool)
    table = catalog.projection(name).tables[0]
    before = sorted(tuple(r) for r in await pool.fetch(f"SELECT * FROM {table}"))
    await rebuild(pool, name, store.iter_log())
    assert sorted(tuple(r) for r in await pool.fetch(f"SELECT * FROM {table}")) == before

    drift = await check_projection(pool, name, store.iter_log, timezone="Asia/Makassar")
    assert drift.ok, drift.differences


async def test_the_registry_follows_registrations_and_curations(
    stream: Stream, pool: asyncpg.Pool, ledger: Ledger, pg_dsn: str, schema_name: str,
    nats_url: str,
) -> None:  # fmt: skip
    await register(ledger, "a", "Tamalate", None)
    await register(ledger, "b", "Tamalate", "NIB-9")
    await register(ledger, "c", None, None)
    await ledger.curate_seller(seller_id="a", status="verified", occurred_at=AT,
                               certifications=[{"kind": "halal", "number": "H-1"},
                                               {"kind": "pirt", "number": "P-1"}])  # fmt: skip
    await ledger.curate_seller(seller_id="b", status="rejected", certifications=[], occurred_at=AT)
    await record(ledger, 1, type="order.placed", seller_id="a", order_id="o1", channel="qris",
                 amount="1000")  # fmt: skip
    await project(pool, stream, pg_dsn, schema_name, nats_url, ["registry"])
    rows = {
        r["seller_id"]: r
        for r in await pool.fetch(
            "SELECT seller_id, name, district, status, has_nib, has_pirt, has_halal, has_sni,"
            " has_hki FROM proj_registry"
        )
    }
    assert {s: tuple(r)[1:] for s, r in rows.items()} == {
        "a": ("Toko a", "Tamalate", "verified", False, True, True, False, False),
        "b": ("Toko b", "Tamalate", "rejected", True, False, False, False, False),
        "c": ("Toko c", "", "pending", False, False, False, False, False),
    }
    await rebuilt_and_checked(pool, "registry")


async def test_orders_and_payouts_follow_the_ledger(
    stream: Stream, pool: asyncpg.Pool, ledger: Ledger, pg_dsn: str, schema_name: str,
    nats_url: str,
) -> None:  # fmt: skip
    await register(ledger, "a", "Tamalate", None)
    await register(ledger, "b", "Wajo", None)
    order = dict(type="order.placed", seller_id="a", channel="whatsapp")
    await record(ledger, 1, **order, order_id="o1", amount="150000")
    await record(ledger, 2, type="payment.captured", order_id="o1", channel="whatsapp",
                 amount="150000", gateway="cash", gateway_ref="kas-1")  # fmt: skip
    await record(ledger, 3, **order, order_id="o2", amount="5000")
    await record(ledger, 4, type="order.cancelled", order_id="o2", channel="whatsapp")
    await record(ledger, 5, **order | {"seller_id": "b"}, order_id="o3", amount="7000")
    await record(ledger, 6, type="payout.sent", seller_id="a", amount="100000", reference="trf-1")
    await project(pool, stream, pg_dsn, schema_name, nats_url, ["orders"])
    rows = await pool.fetch(
        "SELECT seller_id, order_id, amount_minor, captured_minor, cancelled"
        " FROM proj_orders ORDER BY order_id"
    )
    assert [tuple(r) for r in rows] == [
        ("a", "o1", 15000000, 15000000, False),
        ("a", "o2", 500000, 0, True),
        ("b", "o3", 700000, 0, False),
    ]
    payouts = await pool.fetch("SELECT seller_id, reference, amount_minor FROM proj_payouts")
    assert [tuple(r) for r in payouts] == [("a", "trf-1", 10000000)]
    await rebuilt_and_checked(pool, "orders")
    # the rebuilt table keeps the index the seller's page reads by, under its live name
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()"
            " AND indexname = 'proj_orders_by_seller'"
        )
        == 1
    )
