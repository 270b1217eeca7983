"""Recaps through the consumer and the read functions: local days, channels, districts, status."""

from __future__ import annotations

from datetime import UTC, date, datetime

import asyncpg
import pytest

from ledger.domain.errors import ValidationError
from projections import reads
from projections.recaps import CityRecapProjection, SellerRecapsProjection
from projections.schema import ensure_schema
from tests.integration.projections.conftest import ConsumerFactory
from tests.integration.projections.harness import Stream, drain
from tests.unit.projections.log_builder import LogBuilder


def city_log() -> LogBuilder:
    log = LogBuilder()
    log.seller("a", "Panakkukang")
    log.seller("b", "Tamalate")
    log.seller("c", "Panakkukang")
    log.seller("d")  # no district
    # 2026-11-30T17:30:00Z is 01:30 WITA on 2026-12-01
    log.order("a", "o1", "150000.00", "qris", at="2026-11-30T17:30:00Z")
    log.capture("a", "o1", "150000.00", "1050.00", "qris", at="2026-11-30T17:31:00Z")
    log.order("b", "o2", "80000.00", "shopee", at="2026-12-01T09:00:00+08:00")
    log.order("c", "o3", "20000.00", "qris", at="2026-12-01T10:00:00+08:00")
    log.capture("c", "o3", "20000.00", "140.00", "qris", at="2026-12-01T10:05:00+08:00")
    log.refund("c", "o3", "5000.00", "qris", at="2026-12-01T23:59:59+08:00")
    log.order("d", "o4", "10000.00", "pos", at="2026-12-01T12:00:00+08:00")
    # the evening before in WITA (15:59:59Z): 2026-11-30, not in the 12-01 recap
    log.order("a", "o5", "99000.00", "qris", at="2026-11-30T15:59:59Z")
    log.payout("a", "1000.00", at="2026-12-01T12:00:00+08:00")  # no recap effect
    return log


async def test_an_event_at_1730z_counts_for_the_next_local_day(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = city_log()
    await stream.publish(log.messages)
    consumer = make_consumer(SellerRecapsProjection())
    await consumer.start()
    try:
        await drain(consumer, log.position)
    finally:
        await consumer.close()
    rows = await reads.seller_recaps(pool, "a", date(2026, 11, 29), "2026-12-02")
    assert rows == [
        {
            "date": "2026-11-30",
            "channel": "qris",
            "currency": "IDR",
            "orders": 1,
            "order_value": "99000.00",
            "payments": 0,
            "captured": "0.00",
            "refunds": 0,
            "refunded": "0.00",
            "fees": "0.00",
            "net": "0.00",
        },
        {
            "date": "2026-12-01",
            "channel": "qris",
            "currency": "IDR",
            "orders": 1,
            "order_value": "150000.00",
            "payments": 1,
            "captured": "150000.00",
            "refunds": 0,
            "refunded": "0.00",
            "fees": "1050.00",
            "net": "148950.00",
        },
    ]
    assert await reads.seller_recaps(pool, "a", "2026-12-01", "2026-12-01") == rows[1:]
    c = await reads.seller_recaps(pool, "c", "2026-12-01", "2026-12-01")
    assert (c[0]["refunds"], c[0]["net"]) == (1, "14860.00")


async def test_a_deployment_in_utc_puts_the_same_event_on_the_utc_day(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = city_log()
    await stream.publish(log.messages)
    consumer = make_consumer(SellerRecapsProjection(timezone="UTC"))
    await consumer.start()
    try:
        await drain(consumer, log.position)
    finally:
        await consumer.close()
    rows = await reads.seller_recaps(pool, "a", "2026-11-30", "2026-11-30")
    assert [(r["orders"], r["order_value"]) for r in rows] == [(2, "249000.00")]


async def test_seller_recaps_refuse_bad_ranges(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValidationError):
        await reads.seller_recaps(pool, "a", "2026-12-02", "2026-12-01")
    with pytest.raises(ValidationError):
        await reads.seller_recaps(pool, "a", "2025-01-01", "2026-12-01")
    with pytest.raises(ValidationError):
        await reads.seller_recaps(pool, "a", "yesterday", "2026-12-01")


async def test_city_recap_per_channel_and_district(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = city_log()
    await stream.publish(log.messages)
    consumer = make_consumer(CityRecapProjection())
    await consumer.start()
    try:
        await drain(consumer, log.position)
    finally:
        await consumer.close()
    recap = await reads.city_recap(pool, "2026-12-01")
    assert recap["date"] == "2026-12-01"
    assert recap["active_sellers"] == 4
    channels = {r["channel"]: r for r in recap["channels"]}
    assert sorted(channels) == ["pos", "qris", "shopee"]
    assert (channels["qris"]["orders"], channels["qris"]["order_value"]) == (2, "170000.00")
    assert (channels["qris"]["payments"], channels["qris"]["captured"]) == (2, "170000.00")
    assert (channels["qris"]["fees"], channels["qris"]["refunded"]) == ("1190.00", "5000.00")
    assert channels["qris"]["net"] == "163810.00"
    districts = {r["district"]: r for r in recap["districts"]}
    assert sorted(districts, key=str) == [None, "Panakkukang", "Tamalate"]
    pk = districts["Panakkukang"]
    assert (pk["active_sellers"], pk["orders"], pk["order_value"]) == (2, 2, "170000.00")
    assert (pk["payments"], pk["captured"], pk["net"]) == (2, "170000.00", "163810.00")
    assert (districts["Tamalate"]["active_sellers"], districts["Tamalate"]["orders"]) == (1, 1)
    assert (districts[None]["active_sellers"], districts[None]["order_value"]) == (1, "10000.00")
    nov30 = await reads.city_recap(pool, date(2026, 11, 30))
    assert nov30["active_sellers"] == 1
    assert [d["district"] for d in nov30["districts"]] == ["Panakkukang"]
    empty = await reads.city_recap(pool, "2027-01-01")
    assert empty == {"date": "2027-01-01", "active_sellers": 0, "channels": [], "districts": []}
    # a city model made before the per-district counts gets them from its active sellers
    await pool.execute("DROP TABLE proj_city_active_counts")
    await ensure_schema(pool, [CityRecapProjection()])
    assert await reads.city_recap(pool, "2026-12-01") == recap


#: the largest amount the ledger accepts (2**63 - 1 minor units), as a string
LARGEST = "92233720368547758.07"


async def test_a_day_summing_past_64_bits_is_recapped_exactly(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    """Every amount and every seller's own total fits in 64 bits (the write side
    checks that), but a day across sellers, or a seller's orders placed and
    cancelled, need not: the sums are exact, and the read model does not stall."""
    log = LogBuilder()
    log.seller("big", "Panakkukang")
    log.seller("small", "Panakkukang")
    log.order("big", "o1", LARGEST, "qris", at="2026-12-01T09:00:00+08:00")
    log.order("small", "o2", "1.00", "qris", at="2026-12-01T09:05:00+08:00")
    log.order("big", "o3", "5.00", "qris", at="2026-12-05T09:00:00+08:00")
    await stream.publish(log.messages)
    for model in (CityRecapProjection(), SellerRecapsProjection()):
        consumer = make_consumer(model)
        await consumer.start()
        try:
            await drain(consumer, log.position)
        finally:
            await consumer.close()
    recap = await reads.city_recap(pool, "2026-12-01")
    assert [(c["orders"], c["order_value"]) for c in recap["channels"]] == [
        (2, "92233720368547759.07")
    ]
    later = await reads.city_recap(pool, "2026-12-05")
    assert [c["order_value"] for c in later["channels"]] == ["5.00"]
    rows = await reads.seller_recaps(pool, "big", "2026-12-01", "2026-12-05")
    assert [r["order_value"] for r in rows] == [f"{LARGEST}", "5.00"]


async def test_recap_tables_made_with_64_bit_sums_are_widened(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    """Tables made by 0.1.0 (bigint sums) are altered when the schema is ensured."""
    await pool.execute(
        """CREATE TABLE proj_city_daily (day date NOT NULL, channel text NOT NULL,
           currency text NOT NULL, orders bigint NOT NULL DEFAULT 0,
           order_value_minor bigint NOT NULL DEFAULT 0, payments bigint NOT NULL DEFAULT 0,
           captured_minor bigint NOT NULL DEFAULT 0, refunds bigint NOT NULL DEFAULT 0,
           refunded_minor bigint NOT NULL DEFAULT 0, fees_minor bigint NOT NULL DEFAULT 0,
           CONSTRAINT proj_city_daily_pkey PRIMARY KEY (day, channel, currency))"""
    )
    await pool.execute(
        "INSERT INTO proj_city_daily VALUES ('2026-11-01', 'qris', 'IDR', 1, 700, 0, 0, 0, 0, 0)"
    )
    consumer = make_consumer(CityRecapProjection())
    await consumer.start()
    await consumer.close()
    types = dict(
        await pool.fetch(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'proj_city_daily'"
        )
    )
    assert types["order_value_minor"] == types["captured_minor"] == "numeric", types
    assert types["orders"] == "bigint", types
    recap = await reads.city_recap(pool, "2026-11-01")
    assert [c["order_value"] for c in recap["channels"]] == ["7.00"]


async def test_projection_status_reports_lag(
    stream: Stream, make_consumer: ConsumerFactory, pool: asyncpg.Pool
) -> None:
    log = city_log()
    await stream.publish(log.messages[:8])
    consumer = make_consumer(CityRecapProjection())
    await consumer.start()
    try:
        await drain(consumer, 8)
    finally:
        await consumer.close()
    head_at = datetime.fromisoformat(log.messages[-1]["recorded_at"])
    status = await reads.projection_status(pool, log.position, head_at)
    assert status == [
        {"name": "balances", "position": 0, "lag_events": 13, "lag_seconds": None},
        {"name": "city", "position": 8, "lag_events": 5, "lag_seconds": 5.0},
        {"name": "orders", "position": 0, "lag_events": 13, "lag_seconds": None},
        {"name": "recaps", "position": 0, "lag_events": 13, "lag_seconds": None},
        {"name": "registry", "position": 0, "lag_events": 13, "lag_seconds": None},
    ]
    caught_up = await reads.projection_status(pool, 8, datetime.now(UTC))
    assert caught_up[1] == {"name": "city", "position": 8, "lag_events": 0, "lag_seconds": 0.0}
