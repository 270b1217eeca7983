"""The dasbor's queries (``projections.dasbor_reads``) on read models a real consumer
filled from a real stream, in PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import asyncpg
import pytest

from ledger.domain.errors import ValidationError
from projections import catalog, dasbor_reads, reads
from tests.integration.projections.conftest import ConsumerFactory
from tests.integration.projections.harness import Stream, drain
from tests.unit.projections.log_builder import LogBuilder

NONE = dict.fromkeys(("nib", "pirt", "halal", "sni", "hki"), False)


def curate(log: LogBuilder, seller_id: str, status: str, *kinds: str) -> None:
    certs = [{"kind": k, "number": f"{k}-1"} for k in kinds]
    log.add("seller.curated", {"seller_id": seller_id, "status": status,
                               "certifications": certs})  # fmt: skip


def dasbor_log() -> LogBuilder:
    log = LogBuilder()
    log.seller("a", "Tamalate")
    log.add("seller.registered", {"seller_id": "b", "name": "Warung B", "district": "Tamalate",
                                  "nib": "9120001", "channels": {}})  # fmt: skip
    log.seller("c", "Wajo")
    log.seller("d")
    curate(log, "a", "verified", "halal", "pirt")
    curate(log, "c", "rejected")
    log.order("a", "o1", "150000.00", "whatsapp", at="2026-12-01T09:00:00+08:00")
    log.capture("a", "o1", "150000.00", "0.00", "whatsapp", at="2026-12-01T09:10:00+08:00")
    log.order("a", "o2", "20000.00", "instagram", at="2026-12-02T10:00:00+08:00")
    log.order("a", "o3", "5000.00", "pos", at="2026-12-02T11:00:00+08:00")
    log.cancel("a", "o3", "5000.00", "pos", at="2026-12-02T11:05:00+08:00")
    log.order("b", "o4", "7000.00", "qris", at="2026-12-03T08:00:00+08:00")
    log.payout("a", "100000.00", at="2026-12-02T12:00:00+08:00")
    log.payout("a", "20000.00", at="2026-12-03T12:00:00+08:00")
    return log


@pytest.fixture
async def models(stream: Stream, make_consumer: ConsumerFactory) -> LogBuilder:
    log = dasbor_log()
    await stream.publish(log.messages)
    for name in ("registry", "orders", "city"):
        consumer = make_consumer(catalog.projection(name))
        await consumer.start()
        try:
            await drain(consumer, log.position)
        finally:
            await consumer.close()
    return log


async def test_the_registry_filters_by_district_status_and_what_a_seller_lacks(
    models: LogBuilder, pool: asyncpg.Pool
) -> None:
    everyone = await dasbor_reads.seller_registry(pool)
    assert [(s["seller_id"], s["district"], s["status"]) for s in everyone] == [
        ("a", "Tamalate", "verified"), ("b", "Tamalate", "pending"), ("c", "Wajo", "rejected"),
        ("d", None, "pending")]  # fmt: skip
    assert everyone[3]["certifications"] == NONE
    a, b = everyone[0], everyone[1]
    assert (a["name"], b["name"]) == ("Toko a", "Warung B")
    assert a["certifications"] == NONE | {"halal": True, "pirt": True}
    assert b["certifications"] == NONE | {"nib": True}
    tamalate_no_halal = await dasbor_reads.seller_registry(pool, district="Tamalate",
                                                            lacking="halal")  # fmt: skip
    assert [s["seller_id"] for s in tamalate_no_halal] == ["b"]
    pending = await dasbor_reads.seller_registry(pool, status="pending", limit=1, offset=1)
    assert [s["seller_id"] for s in pending] == ["d"]
    assert await dasbor_reads.seller_registry(pool, district="Mariso") == []
    for bad in ({"status": "gone"}, {"lacking": "iso9001"}, {"limit": 0}, {"offset": -1}):
        with pytest.raises(ValidationError):
            await dasbor_reads.seller_registry(pool, **bad)


async def test_certification_counts_per_district(models: LogBuilder, pool: asyncpg.Pool) -> None:
    counts = await dasbor_reads.certification_counts(pool)
    lacking_all = dict.fromkeys(NONE, 1)
    assert counts == [
        {"district": "Tamalate", "sellers": 2,
         "statuses": {"verified": 1, "pending": 1, "rejected": 0},
         "lacking": {"nib": 1, "pirt": 1, "halal": 1, "sni": 2, "hki": 2}},
        {"district": "Wajo", "sellers": 1,
         "statuses": {"verified": 0, "pending": 0, "rejected": 1}, "lacking": lacking_all},
        {"district": None, "sellers": 1,
         "statuses": {"verified": 0, "pending": 1, "rejected": 0}, "lacking": lacking_all},
    ]  # fmt: skip
    assert await dasbor_reads.certification_counts(pool, district="Wajo") == counts[1:2]


async def test_the_city_range_is_the_daily_recap_day_by_day(
    models: LogBuilder, pool: asyncpg.Pool
) -> None:
    first, last = date(2026, 11, 30), date(2026, 12, 3)
    out = await dasbor_reads.city_recap_range(pool, first, last)
    assert (out["from"], out["to"]) == ("2026-11-30", "2026-12-03")
    days: list[dict[str, Any]] = out["days"]
    assert [d["date"] for d in days] == ["2026-11-30", "2026-12-01", "2026-12-02", "2026-12-03"]
    for i, day in enumerate(days):
        assert day == await reads.city_recap(pool, first + timedelta(days=i))
    assert days[0] == {"date": "2026-11-30", "active_sellers": 0, "channels": [],
                       "districts": []}  # fmt: skip
    assert (days[1]["active_sellers"], days[1]["channels"][0]["captured"]) == (1, "150000.00")
    assert [c["channel"] for c in days[2]["channels"]] == ["instagram", "pos"]
    with pytest.raises(ValueError, match="366"):
        await dasbor_reads.city_recap_range(pool, first, first + timedelta(days=366))
    with pytest.raises(ValueError, match="before"):
        await dasbor_reads.city_recap_range(pool, last, first)


async def test_a_sellers_orders_and_payouts_newest_first(
    models: LogBuilder, pool: asyncpg.Pool
) -> None:
    orders = await dasbor_reads.seller_orders(pool, "a")
    assert [(o["order_id"], o["status"], o["amount"]) for o in orders] == [
        ("o3", "cancelled", "5000.00"), ("o2", "open", "20000.00"),
        ("o1", "paid", "150000.00")]  # fmt: skip
    assert orders[0] == {"channel": "pos", "order_id": "o3", "status": "cancelled",
                         "amount": "5000.00", "currency": "IDR",
                         "placed_at": "2026-12-02T03:00:00+00:00"}  # fmt: skip
    assert [o["order_id"] for o in await dasbor_reads.seller_orders(pool, "a", limit=1)] == ["o3"]
    assert await dasbor_reads.seller_orders(pool, "c") == []
    payouts = await dasbor_reads.seller_payouts(pool, "a")
    assert [(p["payout_ref"], p["amount"], p["currency"]) for p in payouts] == [
        (f"po-{models.position}", "20000.00", "IDR"),
        (f"po-{models.position - 1}", "100000.00", "IDR")]  # fmt: skip
    assert payouts[0]["recorded_at"] > payouts[1]["recorded_at"]
    assert await dasbor_reads.seller_payouts(pool, "b") == []
    with pytest.raises(ValidationError):
        await dasbor_reads.seller_orders(pool, "a", limit=1001)
