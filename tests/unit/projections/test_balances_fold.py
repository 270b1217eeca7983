"""The balances fold: pending through an order's life, totals, and that batching changes nothing."""

from __future__ import annotations

import pytest

from projections.balances import BalanceFact, OrderState, fold, order_keys, parse
from projections.envelope import PoisonMessage
from tests.unit.projections.log_builder import LogBuilder, synthetic_log


def facts(log: LogBuilder) -> list[BalanceFact]:
    return [f for f in (parse(m) for m in log.messages) if f is not None]


def test_pending_follows_an_order_through_partial_capture_and_cancel() -> None:
    log = LogBuilder()
    log.seller("s1")
    log.order("s1", "o1", "100000.00")
    log.capture("s1", "o1", "30000.00", fee="210.00")
    log.cancel("s1", "o1", "100000.00")
    changes = fold(facts(log), {})
    d = changes.balances[("s1", "IDR")]
    assert d.pending_minor == 0  # +100000 -30000 -70000 (the remainder)
    assert (d.captured_minor, d.fees_minor) == (3_000_000, 21_000)
    assert changes.orders[("qris", "o1")] == OrderState("s1", "IDR", 10_000_000, 3_000_000, False)
    assert d.last_position == 4


def test_capture_beyond_the_order_reduces_pending_by_the_unpaid_part_only() -> None:
    log = LogBuilder()
    log.order("s1", "o1", "100.00")
    log.capture("s1", "o1", "60.00")
    log.capture("s1", "o1", "60.00")  # the ledger refuses this; the fold must stay sane
    d = fold(facts(log), {}).balances[("s1", "IDR")]
    assert d.pending_minor == 0
    assert d.captured_minor == 12_000


def test_refund_and_payout_touch_totals_not_pending() -> None:
    log = LogBuilder()
    log.order("s1", "o1", "500.00")
    log.capture("s1", "o1", "500.00", fee="5.00")
    log.refund("s1", "o1", "100.00")
    log.payout("s1", "200.00")
    log.cancel("s1", "o1", "500.00")  # fully paid: closed already, nothing to take off
    d = fold(facts(log), {}).balances[("s1", "IDR")]
    assert (
        d.pending_minor,
        d.captured_minor,
        d.refunded_minor,
        d.fees_minor,
        d.paid_out_minor,
    ) == (
        0,
        50_000,
        10_000,
        500,
        20_000,
    )


def test_state_from_an_earlier_batch_is_used_and_not_mutated() -> None:
    before = {("shopee", "o9"): OrderState("s2", "IDR", 80_000, 20_000, True)}
    log = LogBuilder(first_position=41)
    log.capture("s2", "o9", "600.00", channel="shopee")
    changes = fold(facts(log), before)
    assert changes.balances[("s2", "IDR")].pending_minor == -60_000
    assert changes.orders[("shopee", "o9")].open is False
    assert before[("shopee", "o9")] == OrderState("s2", "IDR", 80_000, 20_000, True)


def test_registration_makes_a_zero_row_and_ignored_types_make_none() -> None:
    log = LogBuilder()
    log.seller("s3")
    log.add("payment.failed", {"seller_id": "s3", "order_id": "x", "channel": "qris"})
    log.add("suspense.recorded", {"suspense_id": "p1", "amount": "5.00", "currency": "IDR"})
    assert len(facts(log)) == 1
    changes = fold(facts(log), {})
    assert list(changes.balances) == [("s3", "IDR")]
    assert changes.balances[("s3", "IDR")].pending_minor == 0


def test_currencies_are_kept_apart() -> None:
    log = LogBuilder()
    log.order("s1", "o1", "10.00", currency="USD")
    log.order("s1", "o2", "10.00")
    changes = fold(facts(log), {})
    assert changes.balances[("s1", "USD")].pending_minor == 1_000
    assert changes.balances[("s1", "IDR")].pending_minor == 1_000


@pytest.mark.parametrize(
    "data",
    [
        {"order_id": "o", "channel": "qris", "amount": "1.00"},  # no seller
        {"seller_id": "s", "order_id": "o", "channel": "qris", "amount": "1.001"},
        {"seller_id": "s", "order_id": "o", "channel": "qris", "amount": 1.5},
        {"seller_id": "s", "order_id": "o", "channel": "qris", "amount": "1", "currency": "XXX"},
        {"seller_id": "s", "channel": "qris", "amount": "1.00"},  # no order
    ],
)
def test_unusable_data_is_poison(data: dict[str, object]) -> None:
    log = LogBuilder()
    with pytest.raises(PoisonMessage):
        parse(log.add("order.placed", data))


def test_folding_in_batches_equals_folding_at_once() -> None:
    log, expected = synthetic_log(3000, sellers=8, seed=3)
    all_facts = facts(log)
    whole = fold(all_facts, {})
    orders: dict = {}
    sums: dict = {}
    for i in range(0, len(all_facts), 97):
        chunk = all_facts[i : i + 97]
        changes = fold(chunk, {k: v for k, v in orders.items() if k in order_keys(chunk)})
        orders.update(changes.orders)
        for key, d in changes.balances.items():
            acc = sums.setdefault(key, [0, 0, 0, 0, 0])
            for j, v in enumerate(
                (
                    d.pending_minor,
                    d.captured_minor,
                    d.refunded_minor,
                    d.fees_minor,
                    d.paid_out_minor,
                )
            ):
                acc[j] += v
    assert orders == whole.orders
    for (seller, _), d in whole.balances.items():
        row = [d.pending_minor, d.captured_minor, d.refunded_minor, d.fees_minor, d.paid_out_minor]
        assert sums[(seller, "IDR")] == row
        assert row == [
            expected.pending[seller],
            expected.captured[seller],
            expected.refunded[seller],
            expected.fees[seller],
            expected.paid_out[seller],
        ]
