"""The recap folds: local days, per-channel sums, districts and active sellers."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from projections.envelope import PoisonMessage, local_day
from projections.recaps import (
    CityRecapProjection,
    RecapFact,
    SellerRecapsProjection,
    SellerRegistered,
    fold_city,
    fold_seller_recaps,
    parse,
)
from tests.unit.projections.log_builder import LogBuilder

WITA = ZoneInfo("Asia/Makassar")


@pytest.mark.parametrize(
    ("occurred_at", "day"),
    [
        ("2026-11-30T17:30:00Z", date(2026, 12, 1)),  # CONTRACT section 1
        ("2026-11-30T15:59:59+00:00", date(2026, 11, 30)),  # 23:59:59 WITA
        ("2026-11-30T16:00:00+00:00", date(2026, 12, 1)),  # 00:00 WITA
        ("2026-12-01T00:30:00+08:00", date(2026, 12, 1)),
        ("2026-12-01T00:59:59+09:00", date(2026, 11, 30)),  # 23:59:59 WITA
    ],
)
def test_local_day(occurred_at: str, day: date) -> None:
    assert local_day(occurred_at, WITA) == day


def test_local_day_refuses_a_time_without_offset() -> None:
    with pytest.raises(PoisonMessage):
        local_day("2026-11-30T17:30:00", WITA)


def test_seller_recap_sums_per_day_and_channel() -> None:
    log = LogBuilder()
    log.order("s1", "o1", "100000.00", "qris", at="2026-11-30T17:30:00Z")
    log.order("s1", "o2", "50000.00", "qris", at="2026-11-30T18:00:00Z")
    log.capture("s1", "o1", "100000.00", "700.00", "qris", at="2026-11-30T17:45:00Z")
    log.refund("s1", "o1", "10000.00", "qris", at="2026-12-01T02:00:00Z")
    log.order("s1", "o3", "20000.00", "shopee", at="2026-11-30T10:00:00Z")
    facts = [parse(m, WITA) for m in log.messages]
    rows = fold_seller_recaps([f for f in facts if f is not None])
    dec1 = rows[("s1", date(2026, 12, 1), "qris", "IDR")]
    assert dec1.columns() == (2, 15_000_000, 1, 10_000_000, 1, 1_000_000, 70_000)
    nov30 = rows[("s1", date(2026, 11, 30), "shopee", "IDR")]
    assert (nov30.orders, nov30.order_value_minor, nov30.payments) == (1, 2_000_000, 0)
    assert len(rows) == 2


def test_city_fold_uses_districts_from_earlier_batches_and_this_one() -> None:
    log = LogBuilder()
    log.seller("new", "Mariso")
    log.order("new", "o1", "10.00", "pos", at="2026-11-30T03:00:00Z")
    log.order("old", "o2", "20.00", "pos", at="2026-11-30T03:00:00Z")
    log.order("old", "o3", "30.00", "website", at="2026-11-30T04:00:00Z")
    log.order("anon", "o4", "40.00", "pos", at="2026-11-30T05:00:00Z")
    facts = [parse(m, WITA) for m in log.messages]
    assert isinstance(facts[0], SellerRegistered)
    changes = fold_city([f for f in facts if f is not None], {"old": "Tamalate"})
    day = date(2026, 11, 30)
    assert changes.sellers == {"new": "Mariso"}
    assert changes.channels[(day, "pos", "IDR")].orders == 3
    assert changes.channels[(day, "website", "IDR")].order_value_minor == 3_000
    assert changes.districts[(day, "Tamalate", "IDR")].orders == 2
    assert changes.districts[(day, "Mariso", "IDR")].order_value_minor == 1_000
    assert changes.districts[(day, "", "IDR")].orders == 1
    assert changes.active == {(day, "new"): "Mariso", (day, "old"): "Tamalate", (day, "anon"): ""}


def test_types_without_recap_effect_are_ignored() -> None:
    log = LogBuilder()
    log.cancel("s1", "o1", "10.00")
    log.payout("s1", "10.00")
    assert [parse(m, WITA) for m in log.messages] == [None, None]


def test_a_fact_is_what_the_message_says() -> None:
    log = LogBuilder(first_position=9)
    m = log.capture("s1", "o1", "150000.00", "1050.00", "tokopedia", at="2026-11-30T17:30:00Z")
    assert parse(m, WITA) == RecapFact(
        9, "payment", "s1", date(2026, 12, 1), "tokopedia", "IDR", 15_000_000, 105_000
    )


def test_both_recap_models_share_one_parse_of_a_message() -> None:
    log = LogBuilder()
    log.order("s1", "o1", "100000.00", "qris", at="2026-11-30T17:30:00Z")
    message = log.messages[0]
    seller, city = SellerRecapsProjection(), CityRecapProjection()
    fact = seller.parse(message)
    assert fact is not None and city.parse(message) is fact  # the same object, parsed once
    copy = dict(message, data={**message["data"], "amount": "5.00"})
    other = city.parse(copy)  # another message object is parsed anew
    assert isinstance(other, RecapFact) and other.amount_minor == 500
    broken = dict(message, data={**message["data"], "amount": "x"})
    for model in (seller, city, seller):  # a poison message is never kept
        with pytest.raises(PoisonMessage):
            model.parse(broken)
