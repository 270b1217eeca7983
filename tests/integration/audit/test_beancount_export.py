"""`omniledger export --format beancount` is a ledger that `bean-check` accepts.

The history has several sellers (one with an id that is no valid beancount
account component as it stands), captures with and without fees through two
gateways, refunds, payouts, a cancellation, a second currency, a suspense
item recorded and later resolved, an event at 17:30Z (the next WITA day) and
a late event recorded after later days were already booked. The final
balance assertion per seller must equal minus its ``available`` balance
(CONTRACT section 4), the 17:30Z event must be booked on the next local day.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from ledger.app.ledger import Ledger
from ledger.audit.beancount import seller_account
from ledger.domain.commands import parse_command

from .conftest import BEAN_CHECK, CliRunner, History, Http, run_tool


async def write_history(history: History, ledger: Ledger) -> dict[str, object]:
    t = history.tag
    a, b, c = f"toko.anging_mammiri:{t}", f"B-{t}", f"9lives-{t}"
    for s in (a, b, c):
        await history.seller(s)
    # day 1 (2026-11-30 WITA)
    await history.place(a, f"a1-{t}", "150000", "2026-11-30T09:00:00+08:00")
    await history.capture(f"a1-{t}", "150000", "2026-11-30T09:01:00+08:00", fee="1050")
    await history.place(a, f"a2-{t}", "75000", "2026-11-30T10:00:00+08:00", channel="shopee")
    await history.capture(f"a2-{t}", "75000", "2026-11-30T10:01:00+08:00", fee="1500",
                          gateway="xendit", channel="shopee")  # fmt: skip
    await history.place(b, f"b1-{t}", "20000", "2026-11-30T11:00:00+08:00")
    await history.capture(f"b1-{t}", "20000", "2026-11-30T11:01:00+08:00")  # no fee
    await history.place(b, f"b2-{t}", "9999.99", "2026-11-30T12:00:00+08:00")
    await history.cancel(f"b2-{t}", "2026-11-30T12:10:00+08:00")
    # 17:30Z on 2026-11-30 is 01:30 on 2026-12-01 in Makassar
    await history.place(c, f"c1-{t}", "50000", "2026-11-30T17:00:00Z")
    late_night = await history.capture(f"c1-{t}", "50000", "2026-11-30T17:30:00Z", fee="350")
    # day 2
    await history.refund(f"a1-{t}", "50000", "2026-12-01T08:00:00+08:00")
    await history.payout(a, "100000", "2026-12-01T18:00:00+08:00")
    await history.place(c, f"c2-{t}", "12.34", "2026-12-01T09:00:00+08:00")
    await history.fact(type="order.placed", seller_id=c, order_id=f"c3-{t}", channel="website",
                       amount="12.34", currency="USD",
                       occurred_at="2026-12-01T09:30:00+08:00")  # fmt: skip
    await history.fact(type="payment.captured", order_id=f"c3-{t}", channel="website",
                       amount="12.34", fee="0.40", currency="USD", gateway="xendit",
                       gateway_ref=f"x-{t}", occurred_at="2026-12-01T09:31:00+08:00")  # fmt: skip
    # a gateway fact for an order the ledger does not know yet: suspense, then resolved
    raw = {"idempotency_key": f"midtrans:payment:s-{t}", "type": "payment.captured",
           "order_id": f"b3-{t}", "channel": "qris", "amount": "30000", "fee": "210",
           "gateway": "midtrans", "gateway_ref": f"s-{t}",
           "occurred_at": "2026-12-01T13:00:00+08:00"}  # fmt: skip
    suspended = await ledger.record_suspense(
        parse_command(raw), gateway="midtrans", reason="unknown_order", raw=raw
    )
    await history.place(b, f"b3-{t}", "30000", "2026-12-01T12:59:00+08:00")
    resolved = await ledger.resolve_suspense(
        suspended.stream_id, parse_command(raw), occurred_at="2026-12-01T14:00:00+08:00"
    )
    assert resolved.status == "recorded", resolved
    # day 3, then a late refund for day 1 recorded after it
    await history.place(b, f"b4-{t}", "40000", "2026-12-02T10:00:00+08:00")
    await history.capture(f"b4-{t}", "40000", "2026-12-02T10:05:00+08:00", fee="280")
    await history.payout(b, "10000", "2026-12-02T18:00:00+08:00")
    await history.refund(f"b1-{t}", "5000", "2026-11-30T15:00:00+08:00")
    await history.refund(f"a2-{t}", "75000", "2026-12-02T19:00:00+08:00",
                         gateway="xendit", channel="shopee")  # fmt: skip
    return {"sellers": (a, b, c), "late_night": late_night.position}


def final_assertions(text: str) -> dict[tuple[str, str], tuple[str, Decimal]]:
    """(account, currency) -> (date, amount) of the latest ``balance`` directive."""
    latest: dict[tuple[str, str], tuple[str, Decimal]] = {}
    for day, account, amount, currency in re.findall(
        r"^(\d{4}-\d{2}-\d{2}) balance (\S+)\s+(-?\d+\.\d+) ([A-Z]{3})$", text, re.M
    ):
        key = (account, currency)
        if key not in latest or day > latest[key][0]:
            latest[key] = (day, Decimal(amount))
    return latest


async def test_bean_check_accepts_the_export(
    history: History, aledger: Ledger, http: Http, cli: CliRunner, tmp_path: Path
) -> None:
    written = await write_history(history, aledger)
    out = tmp_path / "ledger.audit.beancount"
    run = await cli("export", "--format", "beancount", stdout_path=out)
    assert run.rc == 0, run.err
    text = out.read_text()

    check = await run_tool(str(BEAN_CHECK), str(out))
    assert check.rc == 0, (check.out, check.err, text)
    assert check.err.strip() == "", check.err

    # every position of the log is accounted for: a transaction or a comment
    events = await http.events()
    for message in events:
        p = message["position"]
        assert re.search(rf"^  position: {p}$|^; {p} ", text, re.M), (p, message["type"])

    # the 17:30Z capture is booked on the next local day
    block = re.search(
        rf"^(\d{{4}}-\d{{2}}-\d{{2}}) \*[^\n]*\n  position: {written['late_night']}\n", text, re.M
    )
    assert block is not None, text
    assert block.group(1) == "2026-12-01"

    # the last assertion per seller and currency is minus its available balance
    latest = final_assertions(text)
    sellers = written["sellers"]
    assert isinstance(sellers, tuple)
    checked = 0
    for seller in sellers:
        for currency in ("IDR", "USD"):
            status, balance = await http.get(f"/v1/sellers/{seller}/balance?currency={currency}")
            assert status == 200, balance
            key = (seller_account(seller), currency)
            if Decimal(balance["captured_total"]) == 0:
                assert key not in latest
                continue
            assert latest[key][1] == -Decimal(balance["available"]), (seller, currency, balance)
            checked += 1
    assert checked == 4  # a, b, c in IDR and c in USD


async def test_bean_check_accepts_a_window(
    history: History, aledger: Ledger, cli: CliRunner, tmp_path: Path
) -> None:
    """``--after N`` starts mid-history (refunds of captures before it, a resolution
    of a suspense item before it): still a valid beancount file."""
    await write_history(history, aledger)
    for after in ("5", "12", "20"):
        out = tmp_path / f"window-{after}.beancount"
        run = await cli("export", "--format", "beancount", "--after", after, stdout_path=out)
        assert run.rc == 0, run.err
        check = await run_tool(str(BEAN_CHECK), str(out))
        assert check.rc == 0, (after, check.out, check.err)
        # without the balances before the window, any assertion would be false
        assert " balance " not in out.read_text(), after


async def test_a_suspended_fact_without_money_and_the_first_local_day_export(
    history: History, aledger: Ledger, cli: CliRunner, tmp_path: Path
) -> None:
    """A gateway status for an unknown order is kept in suspense with a zero
    amount; an event on local day 2000-01-01 (the first the ledger accepts):
    both stopped the export with a traceback."""
    t = history.tag
    await history.seller(f"s-{t}")
    await history.place(f"s-{t}", f"o-{t}", "1000", "2000-01-01T12:00:00+08:00")
    raw = {"idempotency_key": f"xendit:status:q-{t}", "type": "order.status_noted",
           "order_id": f"nobody-{t}", "source": "xendit", "status": "FAILED",
           "occurred_at": "2026-12-01T13:00:00+08:00"}  # fmt: skip
    suspended = await aledger.record_suspense(
        parse_command(raw, gateway_facts=True), gateway="xendit", reason="unknown_order", raw=raw
    )
    assert suspended.status == "recorded"
    out = tmp_path / "zero.beancount"
    run = await cli("export", "--format", "beancount", stdout_path=out)
    assert run.rc == 0, run.err
    assert "Traceback" not in run.err
    check = await run_tool(str(BEAN_CHECK), str(out))
    assert check.rc == 0, (check.out, check.err, out.read_text())
    assert "suspense.recorded unknown_order" in out.read_text()


async def test_an_empty_log_exports_a_valid_file(
    apool: object, cli: CliRunner, tmp_path: Path
) -> None:
    """A migrated database with no event yet (``apool`` migrates it)."""
    out = tmp_path / "empty.beancount"
    run = await cli("export", "--format", "beancount", stdout_path=out)
    assert run.rc == 0, run.err
    check = await run_tool(str(BEAN_CHECK), str(out))
    assert check.rc == 0, (check.out, check.err)
