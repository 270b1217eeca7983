"""The beancount export: bean-check accepts it, and its daily balances are the sellers' balances."""

from __future__ import annotations

import io
import random
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ledger.audit.beancount import seller_account, write_beancount
from ledger.domain.errors import ValidationError
from ledger.domain.money import format_minor, parse_amount
from tests.unit.audit.history import message, seal

WITA = ZoneInfo("Asia/Makassar")
ACCOUNT = re.compile(r"\A[A-Z][A-Za-z0-9-]*(:[A-Z0-9][A-Za-z0-9-]*)+\Z")
BALANCE = re.compile(r"^(\d{4}-\d\d-\d\d) balance (\S+)\s+(-?\d+\.\d\d) IDR$", re.M)


def bean_check(path: Path) -> subprocess.CompletedProcess[str]:
    beside = Path(sys.executable).parent / "bean-check"
    command = str(beside) if beside.exists() else shutil.which("bean-check")
    if command is None:
        pytest.fail("bean-check not found: install the test extra (beancount>=3)")
    return subprocess.run([command, str(path)], capture_output=True, text=True, timeout=60)


def captured(seller, order, amount, fee, at, gateway="midtrans", **extra):
    data = {
        "seller_id": seller,
        "order_id": order,
        "channel": "qris",
        "amount": amount,
        "fee": fee,
        "currency": "IDR",
        "gateway": gateway,
        "gateway_ref": f"ref-{order}",
    }
    return message("payment.captured", data, at, **extra)


def refunded(seller, order, amount, at, gateway="midtrans"):
    data = {
        "seller_id": seller,
        "order_id": order,
        "channel": "qris",
        "amount": amount,
        "currency": "IDR",
        "gateway": gateway,
        "gateway_ref": f"rfd-{order}",
    }
    return message("refund.issued", data, at)


def payout(seller, amount, at):
    data = {"seller_id": seller, "amount": amount, "currency": "IDR", "reference": f"po-{at}"}
    return message("payout.sent", data, at)


def placed(seller, order, amount, at):
    data = {
        "seller_id": seller,
        "order_id": order,
        "channel": "qris",
        "amount": amount,
        "currency": "IDR",
    }
    return message("order.placed", data, at)


def history() -> list[dict]:
    """Several sellers over days, with WITA-midnight edges and a late, out-of-order event."""
    s1, s2, s3 = "warung.bu-ani", "727720655", "_odd:seller"
    return seal(
        [
            message(
                "seller.registered",
                {
                    "seller_id": s1,
                    "name": 'Bu "Ani"\nMakassar',
                    "district": "Tamalate",
                    "nib": None,
                    "channels": {},
                },
                "2026-11-28T01:00:00+00:00",
            ),
            placed(s1, "o1", "200000.00", "2026-11-29T02:00:00+00:00"),
            captured(s1, "o1", "200000.00", "1400.00", "2026-11-29T02:05:00+00:00"),
            # 17:30Z is 01:30 WITA the next day: booked on 2026-11-30
            captured(s2, "o2", "150000.00", "1050.00", "2026-11-29T17:30:00Z", gateway="xendit"),
            refunded(s1, "o1", "50000.00", "2026-11-30T03:00:00+00:00"),
            payout(s1, "100000.00", "2026-11-30T10:00:00+00:00"),
            captured(s3, "o3", "10000.00", "0.00", "2026-11-30T15:59:59+00:00"),  # 23:59:59 WITA
            captured(s3, "o4", "20000.00", "140.00", "2026-11-30T16:00:00+00:00"),  # 00:00 WITA
            message(
                "order.status_noted",
                {
                    "seller_id": s2,
                    "order_id": "o2",
                    "channel": "shopee",
                    "source": "shopee",
                    "status": "COMPLETED",
                },
                "2026-12-01T01:00:00+00:00",
            ),
            payout(s2, "100000.00", "2026-12-02T02:00:00+00:00"),
            captured(s1, "o5", "75000.00", "525.00", "2026-12-02T03:00:00+08:00"),
            # recorded last, occurred first: a resent webhook for 2026-11-29 (WITA)
            captured(
                s2,
                "o6",
                "30000.00",
                "210.00",
                "2026-11-29T05:00:00+00:00",
                recorded_at="2026-12-02T09:00:00Z",
            ),
            message(
                "suspense.recorded",
                {
                    "suspense_id": "sus-1",
                    "gateway": "midtrans",
                    "reason": "unknown_order",
                    "amount": "5000.00",
                    "currency": "IDR",
                    "event": {"type": "payment.captured"},
                },
                "2026-12-02T04:00:00+00:00",
            ),
            captured(s3, "o7", "5000.00", "35.00", "2026-12-02T04:00:00+00:00"),
            message(
                "suspense.resolved",
                {"suspense_id": "sus-1", "channel": "qris", "order_id": "o7", "position": 14},
                "2026-12-03T04:00:00+00:00",
            ),
        ]
    )


def expected_balances(messages: list[dict]) -> dict[tuple[str, date], str]:
    """An independent fold: available = captured - fees - refunded - paid out, by WITA day."""
    deltas: defaultdict[str, defaultdict[date, int]] = defaultdict(lambda: defaultdict(int))
    for m in messages:
        d = m["data"]
        sign = {"payment.captured": 1, "refund.issued": -1, "payout.sent": -1}.get(m["type"])
        if sign is None:
            continue
        day = datetime.fromisoformat(m["occurred_at"]).astimezone(WITA).date()
        change = sign * parse_amount(d["amount"], "IDR")
        if m["type"] == "payment.captured":
            change -= parse_amount(d["fee"], "IDR", allow_zero=True)
        deltas[d["seller_id"]][day] += change
    out = {}
    for seller, days in deltas.items():
        running = 0
        for day in sorted(days):
            running += days[day]
            # the ledger owes it: a credit on a liability, so negative in beancount
            out[seller_account(seller), day + timedelta(days=1)] = format_minor(-running, "IDR")
    return out


def export(messages: list[dict], path: Path) -> str:
    out = io.StringIO()
    write_beancount(messages, out)
    path.write_text(out.getvalue())
    return out.getvalue()


def test_bean_check_accepts_the_export(tmp_path: Path) -> None:
    text = export(history(), tmp_path / "ledger.audit.beancount")
    result = bean_check(tmp_path / "ledger.audit.beancount")
    assert result.returncode == 0, result.stdout + result.stderr + text


def test_daily_assertions_are_the_sellers_balances_by_local_day(tmp_path: Path) -> None:
    messages = history()
    text = export(messages, tmp_path / "ledger.audit.beancount")
    asserted = {
        (account, date.fromisoformat(day)): amount for day, account, amount in BALANCE.findall(text)
    }
    assert asserted == expected_balances(messages)
    s1, s2, s3 = (seller_account(s) for s in ("warung.bu-ani", "727720655", "_odd:seller"))
    # the late event of 2026-11-29 is in the balance asserted at the start of 11-30
    assert asserted[s2, date(2026, 11, 30)] == "-29790.00"
    assert asserted[s2, date(2026, 12, 1)] == "-178740.00"
    # 15:59:59Z and 16:00Z fall on two WITA days
    assert asserted[s3, date(2026, 12, 1)] == "-10000.00"
    assert asserted[s3, date(2026, 12, 2)] == "-29860.00"
    assert asserted[s1, date(2026, 12, 3)] == "-123075.00"


def test_dates_are_local_days(tmp_path: Path) -> None:
    text = export(history(), tmp_path / "ledger.audit.beancount")
    assert '2026-11-30 * "xendit" "payment.captured qris:o2"' in text
    assert '2026-11-30 * "midtrans" "payment.captured qris:o3"' in text
    assert '2026-12-01 * "midtrans" "payment.captured qris:o4"' in text
    assert '2026-12-02 * "midtrans" "payment.captured qris:o5"' in text  # +08:00 kept local


def test_a_wrong_assertion_fails_bean_check(tmp_path: Path) -> None:
    text = export(history(), tmp_path / "ledger.audit.beancount")
    day, account, amount = BALANCE.findall(text)[0]
    wrong = text.replace(
        f"{day} balance {account}  {amount} IDR", f"{day} balance {account}  {amount[:-4]}1.00 IDR"
    )
    assert wrong != text
    (tmp_path / "wrong.beancount").write_text(wrong)
    result = bean_check(tmp_path / "wrong.beancount")
    assert result.returncode != 0
    assert "Balance failed" in result.stdout + result.stderr


def test_a_larger_shuffled_history_passes_bean_check(tmp_path: Path) -> None:
    rng = random.Random(11)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    owed: defaultdict[str, int] = defaultdict(int)
    events = []
    for n in range(1500):
        seller = f"s.{rng.randrange(12)}"
        # occurred_at drifts up to 3 days behind the recording order
        at = (start + timedelta(minutes=45 * n - rng.choice([0, 0, 0, 30, 600, 4000]))).isoformat()
        roll = rng.random()
        if roll < 0.6:
            amount = rng.randrange(1, 500) * 1000
            fee = amount * 7 // 1000
            owed[seller] += (amount - fee) * 100
            events.append(
                captured(
                    seller,
                    f"o{n}",
                    f"{amount}.00",
                    f"{fee}.00",
                    at,
                    gateway=rng.choice(["midtrans", "xendit"]),
                )
            )
        elif roll < 0.8 and owed[seller] > 1_000_00:
            owed[seller] -= 1_000_00
            events.append(refunded(seller, f"o{n}", "1000.00", at))
        elif owed[seller] > 0:
            paid = rng.randrange(1, owed[seller] + 1)
            owed[seller] -= paid
            events.append(payout(seller, format_minor(paid, "IDR"), at))
        else:
            events.append(placed(seller, f"o{n}", "1000.00", at))
    messages = seal(events)
    text = export(messages, tmp_path / "big.beancount")
    result = bean_check(tmp_path / "big.beancount")
    assert result.returncode == 0, result.stdout[:2000] + result.stderr[:2000]
    asserted = {
        (account, date.fromisoformat(day)): amount for day, account, amount in BALANCE.findall(text)
    }
    assert asserted == expected_balances(messages)


def test_transactions_stream_before_the_log_ends() -> None:
    out = io.StringIO()
    seen: list[bool] = []

    def messages():
        for m in history():
            yield m
            seen.append(f"position: {m['position']}\n" in out.getvalue())

    write_beancount(messages(), out)
    assert seen[2]  # the first capture (position 3) was written before position 4 was read


def test_every_position_is_accounted_for(tmp_path: Path) -> None:
    messages = history()
    text = export(messages, tmp_path / "ledger.audit.beancount")
    for m in messages:
        p = m["position"]
        assert f"position: {p}\n" in text or f"; {p} " in text, p
    assert "; 1 seller.registered warung.bu-ani" in text  # name with a newline is not echoed


@pytest.mark.parametrize(
    "seller_id",
    [
        "a",
        "abc",
        "Abc",
        "a.b",
        "a_b",
        "a:b",
        "a-b",
        "_x",
        ".",
        "-",
        "9lives",
        "x" * 64,
        "shop.A:1_2-3",
    ],
)
def test_seller_accounts_are_valid_beancount_names(seller_id: str) -> None:
    assert ACCOUNT.match(seller_account(seller_id)), seller_account(seller_id)
    assert seller_account(seller_id) == seller_account(seller_id)


def test_seller_accounts_do_not_collide() -> None:
    ids = ["abc", "Abc", "a.b", "a_b", "a:b", "a-b", "_x", "-x", ".x", "Xx"]
    assert len({seller_account(s) for s in ids}) == len(ids)


def test_metadata_strings_survive_quotes_and_newlines(tmp_path: Path) -> None:
    from beancount import loader

    odd = 'ref "quoted" back\\slash\nnewline\ttab'
    capture = captured("s1", "o1", "100.00", "1.00", "2026-12-01T01:00:00Z")
    capture["data"]["gateway_ref"] = odd
    messages = seal([capture])
    export(messages, tmp_path / "odd.beancount")
    entries, errors, _ = loader.load_file(str(tmp_path / "odd.beancount"))
    assert errors == []
    (txn,) = [e for e in entries if hasattr(e, "postings")]
    assert txn.meta["gateway_ref"] == odd.replace("\t", " ")


def test_a_malformed_money_event_names_its_position() -> None:
    messages = history()
    messages[2]["data"]["amount"] = "1e5"
    with pytest.raises(ValidationError, match="position 3"):
        write_beancount(messages, io.StringIO())


def test_without_assertions_for_a_window(tmp_path: Path) -> None:
    out = io.StringIO()
    write_beancount(history()[5:], out, assert_balances=False)
    assert not BALANCE.findall(out.getvalue())
    (tmp_path / "window.beancount").write_text(out.getvalue())
    assert bean_check(tmp_path / "window.beancount").returncode == 0
