"""The orders fold: an order's amounts and state across batches, and the payouts."""

from __future__ import annotations

from datetime import UTC, datetime

from ledger.domain.orders import order_status
from projections.orders import OrderFact, OrderRow, PayoutRow, fold, parse
from tests.unit.projections.log_builder import LogBuilder

AT = datetime(2026, 12, 1, 2, tzinfo=UTC)


def fact(position: int, kind: str, order_id: str, amount: int = 0) -> OrderFact:
    return OrderFact(position, kind, "a", "whatsapp", order_id, "IDR", amount, AT)  # type: ignore[arg-type]


def test_parse_reads_order_facts_and_payouts() -> None:
    log = LogBuilder()
    placed = log.order("a", "o1", "1500.00", "whatsapp", at="2026-12-01T10:00:00+08:00")
    assert parse(placed) == OrderFact(1, "placed", "a", "whatsapp", "o1", "IDR", 150000, AT)
    payout = parse(log.payout("a", "10.00"))
    assert isinstance(payout, PayoutRow)
    assert (payout.reference, payout.amount_minor) == ("po-2", 1000)
    assert payout.recorded_at == datetime(2026, 11, 30, 12, 0, 2, tzinfo=UTC)
    assert parse(log.seller("b")) is None


def test_an_order_is_paid_refunded_or_cancelled_as_its_facts_say() -> None:
    changes = fold(
        [fact(1, "placed", "o1", 1000), fact(2, "captured", "o1", 400),
         fact(3, "placed", "o2", 500), fact(4, "cancelled", "o2"),
         fact(5, "captured", "ghost", 10), fact(6, "placed", "o1", 99)],
        {},
    )  # fmt: skip
    o1, o2 = changes.orders[("whatsapp", "o1")], changes.orders[("whatsapp", "o2")]
    assert (o1.amount_minor, o1.captured_minor) == (1000, 400), "the second placing is skipped"
    assert ("whatsapp", "ghost") not in changes.orders
    status = lambda r: order_status(  # noqa: E731
        r.amount_minor, r.captured_minor, r.refunded_minor, cancelled=r.cancelled
    )
    assert (status(o1), status(o2)) == ("partially_paid", "cancelled")
    # a later batch: the rest is paid, then all of it refunded
    later = fold([fact(7, "captured", "o1", 600)], {("whatsapp", "o1"): o1})
    assert status(later.orders[("whatsapp", "o1")]) == "paid"
    back = fold([fact(8, "refunded", "o1", 1000)], later.orders)
    assert status(back.orders[("whatsapp", "o1")]) == "refunded"
    assert later.orders[("whatsapp", "o1")].refunded_minor == 0, "the input is not changed"


def test_payouts_pass_through_in_order() -> None:
    p = [PayoutRow(i, "a", f"r{i}", "IDR", i * 100, AT) for i in (3, 4)]
    changes = fold([p[0], fact(5, "placed", "o", 1), p[1]], {})
    assert changes.payouts == p
    assert changes.orders == {("whatsapp", "o"): OrderRow("a", "IDR", 1, AT)}
