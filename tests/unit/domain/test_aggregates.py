"""Order and Seller rules (CONTRACT section 2): a refused command records nothing."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.domain.errors import (
    CurrencyMismatch,
    InsufficientBalance,
    OrderClosed,
    Overpayment,
    RefundExceedsCaptured,
    RuleViolation,
    ValidationError,
)
from ledger.domain.orders import Order, OrderPaid, order_stream_id
from ledger.domain.sellers import Seller, seller_stream_id

AT = "2026-11-30T10:00:00+08:00"


def new_order(amount_minor: int = 10_000_000, currency: str = "IDR") -> Order:
    order = Order(
        seller_id="s-1",
        order_id="o-1",
        channel="qris",
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=AT,
        idempotency_key="place-1",
        metadata=None,
    )
    assert [type(e).__name__ for e in order.collect_events()] == ["Placed"]
    return order


def capture(order: Order, amount_minor: int, **extra: Any) -> None:
    fields: dict[str, Any] = {
        "amount_minor": amount_minor,
        "fee_minor": 0,
        "currency": "IDR",
        "gateway": "midtrans",
        "gateway_ref": f"pay-{order.version}",
        "occurred_at": AT,
        "idempotency_key": f"cap-{order.version}",
    }
    fields.update(extra)
    order.capture(**fields)


def refund(order: Order, amount_minor: int, currency: str = "IDR") -> None:
    order.refund(
        amount_minor=amount_minor,
        currency=currency,
        gateway="midtrans",
        gateway_ref=f"rf-{order.version}",
        occurred_at=AT,
        idempotency_key=f"rf-{order.version}",
    )


def cancel(order: Order) -> None:
    order.cancel(occurred_at=AT, idempotency_key=f"cancel-{order.version}")


def snapshot(order: Order) -> tuple[Any, ...]:
    return (
        order.version,
        order.captured_minor,
        order.refunded_minor,
        order.fees_minor,
        order.cancelled,
        dict(order.payment_refs),
    )


def assert_refused(order: Order, error: type[RuleViolation], code: str, act: Any) -> None:
    before = snapshot(order)
    with pytest.raises(error) as info:
        act()
    assert info.value.code == code
    assert order.collect_events() == [], "a refused command records no event"
    assert snapshot(order) == before, "a refused command changes no state"


# -- the order ------------------------------------------------------------------------


def test_the_stream_id_is_derived_from_channel_and_order_id() -> None:
    order = new_order()
    assert order.id == order_stream_id("qris", "o-1")
    assert order_stream_id("qris", "o-1") != order_stream_id("shopee", "o-1")
    assert order.version == 1


def test_captures_up_to_the_amount_are_recorded_with_fees() -> None:
    order = new_order(10_000)
    capture(order, 6_000, fee_minor=100)
    capture(order, 4_000, fee_minor=50)
    events = order.collect_events()
    assert [type(e).__name__ for e in events] == ["PaymentCaptured", "PaymentCaptured"]
    assert (order.captured_minor, order.fees_minor, order.unpaid_minor) == (10_000, 150, 0)
    assert order.version == 3


def test_overpayment_is_refused_and_records_nothing() -> None:
    order = new_order(10_000)
    capture(order, 9_000)
    order.collect_events()
    assert_refused(order, Overpayment, "overpayment", lambda: capture(order, 1_001))
    capture(order, 1_000)
    assert len(order.collect_events()) == 1


def test_a_single_capture_above_the_amount_is_an_overpayment() -> None:
    order = new_order(10_000)
    assert_refused(order, Overpayment, "overpayment", lambda: capture(order, 10_001))


def test_refunds_up_to_the_captured_total_are_recorded() -> None:
    order = new_order(10_000)
    capture(order, 8_000)
    refund(order, 5_000)
    refund(order, 3_000)
    assert [type(e).__name__ for e in order.collect_events()] == [
        "PaymentCaptured",
        "RefundIssued",
        "RefundIssued",
    ]
    assert (order.refunded_minor, order.net_captured_minor) == (8_000, 0)


def test_refund_exceeding_captured_is_refused_and_records_nothing() -> None:
    order = new_order(10_000)
    assert_refused(
        order, RefundExceedsCaptured, "refund_exceeds_captured", lambda: refund(order, 1)
    )
    capture(order, 4_000)
    refund(order, 3_000)
    order.collect_events()
    assert_refused(
        order, RefundExceedsCaptured, "refund_exceeds_captured", lambda: refund(order, 1_001)
    )


def test_cancel_closes_an_unpaid_order() -> None:
    order = new_order(10_000)
    cancel(order)
    assert [type(e).__name__ for e in order.collect_events()] == ["Cancelled"]
    assert order.cancelled
    assert order.unpaid_minor == 0


def test_a_cancelled_order_refuses_captures_and_a_second_cancel() -> None:
    order = new_order(10_000)
    cancel(order)
    order.collect_events()
    assert_refused(order, OrderClosed, "order_closed", lambda: capture(order, 1_000))
    assert_refused(order, OrderClosed, "order_closed", lambda: cancel(order))


def test_cancelling_a_paid_order_is_refused_until_it_is_refunded() -> None:
    order = new_order(10_000)
    capture(order, 2_000)
    order.collect_events()
    assert_refused(order, OrderPaid, "order_paid", lambda: cancel(order))
    refund(order, 2_000)
    cancel(order)
    assert [type(e).__name__ for e in order.collect_events()] == ["RefundIssued", "Cancelled"]


def test_currency_mismatch_is_refused_for_captures_and_refunds() -> None:
    order = new_order(10_000, "IDR")
    assert_refused(
        order,
        CurrencyMismatch,
        "currency_mismatch",
        lambda: capture(order, 1_000, currency="USD"),
    )
    capture(order, 1_000)
    order.collect_events()
    assert_refused(order, CurrencyMismatch, "currency_mismatch", lambda: refund(order, 500, "USD"))


def test_a_failed_payment_is_history_without_balance_effect() -> None:
    order = new_order(10_000)
    order.fail_payment(
        gateway="midtrans", gateway_ref="p-1", reason="deny", occurred_at=AT, idempotency_key="f"
    )
    assert [type(e).__name__ for e in order.collect_events()] == ["PaymentFailed"]
    assert (order.captured_minor, order.unpaid_minor) == (0, 10_000)


def test_replaying_the_events_rebuilds_the_same_state() -> None:
    order = new_order(10_000)
    capture(order, 7_000, fee_minor=70)
    refund(order, 2_000)
    events = order.collect_events()
    copy = new_order(10_000)
    copy_events = [e for e in events]  # rules are not re-run on replay
    replayed: Order | None = copy
    for e in copy_events:
        replayed = e.mutate(replayed)  # type: ignore[attr-defined]
    assert replayed is not None
    assert snapshot(replayed)[:4] == snapshot(order)[:4]


# -- the seller -----------------------------------------------------------------------


def new_seller() -> Seller:
    seller = Seller(
        seller_id="s-1",
        name="Toko Satu",
        district="Panakkukang",
        nib=None,
        channels={"shopee": "727720655"},
        occurred_at=AT,
    )
    seller.collect_events()
    return seller


def pay_out(seller: Seller, amount_minor: int, available_minor: int) -> None:
    seller.pay_out(
        amount_minor=amount_minor,
        currency="IDR",
        reference="trf-1",
        available_minor=available_minor,
        occurred_at=AT,
        idempotency_key=f"po-{seller.version}",
    )


def test_the_seller_stream_id_is_derived_from_the_seller_id() -> None:
    assert new_seller().id == seller_stream_id("s-1")


def test_a_payout_up_to_the_available_balance_is_recorded() -> None:
    seller = new_seller()
    pay_out(seller, 5_000, 5_000)
    assert [type(e).__name__ for e in seller.collect_events()] == ["PayoutSent"]
    assert seller.version == 2


def test_a_payout_above_the_available_balance_is_refused_and_records_nothing() -> None:
    seller = new_seller()
    with pytest.raises(InsufficientBalance) as info:
        pay_out(seller, 5_001, 5_000)
    assert info.value.code == "insufficient_balance"
    assert seller.collect_events() == []
    assert seller.version == 1
    with pytest.raises(InsufficientBalance):
        pay_out(seller, 1, 0)
    assert seller.collect_events() == []


def test_curation_records_status_and_certifications_and_refuses_unknown_status() -> None:
    seller = new_seller()
    assert seller.curation_status == "pending"
    certs = [{"kind": "halal", "number": "ID-123", "valid_until": "2030-01-01"}]
    seller.curate(status="verified", certifications=certs, occurred_at=AT)
    assert [type(e).__name__ for e in seller.collect_events()] == ["Curated"]
    assert (seller.curation_status, seller.certifications) == ("verified", certs)
    with pytest.raises(ValidationError) as info:
        seller.curate(status="approved", certifications=[], occurred_at=AT)
    assert info.value.field == "status"
    assert seller.collect_events() == []
    assert seller.curation_status == "verified"
