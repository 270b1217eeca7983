"""Issue 11, point 2: the balances check of ``check-projections`` shares no fold.

``ledger.audit.balance_sums`` sums a real log (written through the real write
path) in SQL. It agrees with the write side's account rows and with figures
worked out by hand, and it catches a wrong rule in the money module that the
projection, the write side and the replay share (which their comparison with
each other cannot).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from ledger.audit.balance_sums import balance_sums, differences
from ledger.domain import balances as money_rule
from ledger.store import LedgerStore
from projections.balances import fold, parse

from .conftest import History
from .test_time_travel import scripted


async def _written(history: History) -> str:
    h = await scripted(history)
    t = history.tag
    # a partial capture, refunded, then a cancel of the order; a second currency
    await history.place(h["seller"], f"p1-{t}", "40000", "2026-12-03T09:00:00+08:00")
    await history.capture(f"p1-{t}", "15000", "2026-12-03T09:05:00+08:00", fee="105")
    await history.refund(f"p1-{t}", "15000", "2026-12-03T09:07:00+08:00")
    await history.cancel(f"p1-{t}", "2026-12-03T09:10:00+08:00")
    await history.fact(
        type="order.placed", seller_id=h["seller"], order_id=f"u1-{t}", channel="website",
        amount="12.50", currency="USD", occurred_at="2026-12-03T10:00:00+08:00",
    )  # fmt: skip
    await history.fact(
        type="payment.captured", order_id=f"u1-{t}", channel="website", amount="10.00",
        fee="0.30", currency="USD", gateway="xendit", gateway_ref=f"x-{t}",
        occurred_at="2026-12-03T10:05:00+08:00",
    )  # fmt: skip
    return str(h["seller"])


def _rows_of_projection_fold(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The balance rows the projection's pure fold makes of the whole log."""
    facts = [f for f in (parse(m) for m in log) if f is not None]
    changes = fold(facts, {})
    return [{"seller_id": s, "currency": c, **d.fields()} for (s, c), d in changes.balances.items()]


async def test_sums_agree_with_the_write_side_and_the_hand_figures(
    history: History, astore: LedgerStore, apool: asyncpg.Pool
) -> None:
    seller = await _written(history)
    head, _ = await astore.head()
    sums = await balance_sums(apool, head)
    # by hand: o1 100000 (fee 700), o2 50000 (350), o3 30000 (210) captured,
    # p1 15000 of 40000 (105), refunded, then cancelled, o5 cancelled, o4 10000
    # open; 20000 + 15000 refunded, 30000 paid out
    assert sums[(seller, "IDR")] == {
        "pending": 1_000_000,
        "captured_total": 19_500_000,
        "fees_total": 136_500,
        "refunded_total": 3_500_000,
        "paid_out_total": 3_000_000,
        "available": 19_500_000 - 136_500 - 3_500_000 - 3_000_000,
    }
    assert sums[(seller, "USD")] == {
        "pending": 250, "captured_total": 1000, "fees_total": 30, "refunded_total": 0,
        "paid_out_total": 0, "available": 970,
    }  # fmt: skip
    rows = []
    for seller_id, currency in sums:
        account = await astore.account(seller_id, currency)
        assert account is not None
        rows.append({"seller_id": seller_id, "currency": currency, **account})
    assert differences(rows, sums) == []
    log = [m async for m in astore.iter_log()]
    assert differences(_rows_of_projection_fold(log), sums) == []


async def test_a_wrong_money_rule_is_caught(
    history: History, astore: LedgerStore, apool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    seller = await _written(history)
    head, _ = await astore.head()
    sums = await balance_sums(apool, head)
    log = [m async for m in astore.iter_log()]

    # "available" forgets the fees: every consumer of the rule would agree
    monkeypatch.delitem(money_rule.AVAILABLE_SIGNS, "fees_minor")  # type: ignore[arg-type]
    found = differences(_rows_of_projection_fold(log), sums)
    assert any(seller in line and "available" in line for line in found), found
    monkeypatch.undo()

    # a capture no longer takes its amount off pending
    real = money_rule.effect

    def wrong(event_type: str, **kw: Any) -> money_rule.Totals:
        change = real(event_type, **kw)
        if event_type == money_rule.CAPTURED:
            change.pending_minor = 0
        return change

    monkeypatch.setattr(money_rule, "effect", wrong)
    found = differences(_rows_of_projection_fold(log), sums)
    assert any(seller in line and "pending" in line for line in found), found
