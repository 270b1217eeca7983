"""Settlement reports against the ledger: parsing, matching, the local-day filter."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from ledger.audit.findings import format_table
from ledger.audit.reconcile import reconcile
from ledger.audit.settlement_report import ReportError, parse_report
from ledger.domain.errors import ValidationError
from tests.unit.audit.history import message, seal

REPORTS = Path(__file__).parents[2] / "fixtures" / "reports"
MIDTRANS_HEADER = "Date & Time,Order ID,Transaction Type,Channel,Status,Amount,Fee\n"


def captured(order, amount, fee, at, *, gateway="midtrans", ref=None, seller="s1"):
    data = {
        "seller_id": seller,
        "order_id": order,
        "channel": "qris",
        "amount": amount,
        "fee": fee,
        "currency": "IDR",
        "gateway": gateway,
        "gateway_ref": ref or f"tx-{order}",
    }
    return message("payment.captured", data, at)


def refunded(order, amount, at, *, gateway="midtrans", ref=None):
    data = {
        "seller_id": "s1",
        "order_id": order,
        "channel": "qris",
        "amount": amount,
        "currency": "IDR",
        "gateway": gateway,
        "gateway_ref": ref or f"rf-{order}",
    }
    return message("refund.issued", data, at)


def midtrans_ledger() -> list[dict]:
    return seal(
        [
            captured("ord-000", "10000.00", "70.00", "2026-11-30T15:59:59Z"),  # 11-30 WITA
            captured("ord-001", "150000.00", "1050.00", "2026-11-30T16:00:00Z"),  # 00:00 WITA
            message("order.placed", {"order_id": "ord-002"}, "2026-12-01T01:00:00Z"),
            captured("ord-002", "75000.00", "1500.00", "2026-12-01T02:15:02Z"),
            captured("ord-003", "25000.00", "175.00", "2026-12-01T03:00:00Z"),
            captured("ord-005", "40000.00", "280.00", "2026-12-01T04:00:00Z"),
            refunded("ord-001", "50000.00", "2026-12-01T05:00:00Z"),
            captured("ord-x", "99000.00", "0.00", "2026-12-01T05:00:00Z", gateway="xendit"),
            captured("ord-008", "5000.00", "35.00", "2026-12-01T16:00:00Z"),  # 12-02 WITA
        ]
    )


def midtrans_findings(**kwargs):
    rows = parse_report(
        (REPORTS / "midtrans_balance_statement.csv").read_bytes(), gateway="midtrans"
    )
    return reconcile(rows, midtrans_ledger(), gateway="midtrans", date="2026-12-01", **kwargs)


def orders(entries: list[dict]) -> list[tuple[str, str]]:
    return [(entry["type"], entry["order_id"]) for entry in entries]


def test_one_missing_each_way_and_one_mismatch_are_exactly_the_findings() -> None:
    findings = midtrans_findings()
    assert orders(findings.missing_in_ledger) == [("payment", "ord-004")]
    assert orders(findings.missing_in_report) == [("payment", "ord-005")]
    assert orders(findings.amount_mismatch) == [("payment", "ord-003")]
    assert findings.fee_mismatch == []
    assert orders(findings.matched) == [
        ("payment", "ord-001"),
        ("payment", "ord-002"),
        ("refund", "ord-001"),
    ]
    assert not findings.ok
    assert findings.summary == {
        "missing_in_ledger": 1,
        "missing_in_report": 1,
        "amount_mismatch": 1,
        "fee_mismatch": 0,
        "matched": 3,
        "ok": False,
        "report_rows": 5,
        "ledger_messages": 5,
        "report_rows_total": 9,
        "report_rows_ignored": 2,
        "report_rows_ignored_reasons": {"type 'disbursement'": 1, "status 'expire'": 1},
        "report_rows_other_days": 2,
    }


def test_findings_carry_both_sides_as_strings() -> None:
    findings = midtrans_findings()
    (mismatch,) = findings.amount_mismatch
    assert mismatch["report_amount"] == "20000.00"
    assert mismatch["ledger_amount"] == "25000.00"
    assert mismatch["report_fee"] == "140.00" and mismatch["ledger_fee"] == "175.00"
    assert mismatch["line"] == 5 and mismatch["position"] == 5
    assert mismatch["reference"] == "tx-ord-003"
    (missing,) = findings.missing_in_ledger
    assert (missing["report_amount"], missing["ledger_amount"], missing["position"]) == (
        "50000.00",
        None,
        None,
    )
    assert missing["report_time"] == "2026-12-01T11:30:00+07:00"
    (absent,) = findings.missing_in_report
    assert (absent["report_amount"], absent["ledger_amount"], absent["line"]) == (
        None,
        "40000.00",
        None,
    )
    refund = findings.matched[2]
    assert refund["report_amount"] == refund["ledger_amount"] == "50000.00"  # sign dropped


def test_as_dict_is_json_ready() -> None:
    body = midtrans_findings().as_dict()
    assert json.loads(json.dumps(body)) == orjson.loads(orjson.dumps(body))
    assert body["gateway"] == "midtrans" and body["date"] == "2026-12-01"
    assert set(body["findings"]) == {
        "matched",
        "missing_in_ledger",
        "missing_in_report",
        "amount_mismatch",
        "fee_mismatch",
    }
    assert body["summary"]["amount_mismatch"] == 1


def test_format_table_lists_every_finding() -> None:
    table = format_table(midtrans_findings())
    first, *rows = table.splitlines()
    assert first.startswith("midtrans 2026-12-01 (Asia/Makassar): 3 matched, 1 missing in ledger")
    assert rows[0].split()[:3] == ["finding", "type", "order"]
    assert [row.split()[0] for row in rows[1:]] == [
        "missing_in_ledger",
        "missing_in_report",
        "amount_mismatch",
    ]
    assert "20000.00" in rows[3] and "25000.00" in rows[3]
    assert len(format_table(midtrans_findings(), show_matched=True).splitlines()) == 8


def test_the_day_turns_at_16_00_utc() -> None:
    rows = parse_report(
        MIDTRANS_HEADER + "2026-11-30 22:59:59,late,payment,QRIS,settlement,1000.00,7.00\n"
        "2026-11-30 23:00:00,early,payment,QRIS,settlement,2000.00,14.00\n",
        gateway="midtrans",
    )
    assert [row.time for row in rows] == [
        datetime(2026, 11, 30, 15, 59, 59, tzinfo=UTC),
        datetime(2026, 11, 30, 16, 0, tzinfo=UTC),
    ]
    ledger = seal(
        [
            captured("late", "1000.00", "7.00", "2026-11-30T15:59:59Z"),
            captured("early", "2000.00", "14.00", "2026-11-30T16:00:00+00:00"),
        ]
    )
    nov30 = reconcile(rows, ledger, gateway="midtrans", date=date(2026, 11, 30))
    dec01 = reconcile(rows, ledger, gateway="midtrans", date="2026-12-01")
    assert orders(nov30.matched) == [("payment", "late")] and nov30.ok
    assert orders(dec01.matched) == [("payment", "early")] and dec01.ok
    assert nov30.summary["report_rows_other_days"] == dec01.summary["report_rows_other_days"] == 1
    # in UTC the two are one day
    utc = reconcile(rows, ledger, gateway="midtrans", date="2026-11-30", timezone="UTC")
    assert len(utc.matched) == 2


def test_xendit_transactions_match_by_reference_first() -> None:
    rows = parse_report((REPORTS / "xendit_transactions.csv").read_bytes(), gateway="xendit")
    ledger = seal(
        [
            # a static QR: many payments share its reference_id; product_id tells them apart
            captured("static-qr-7", "10000.00", "70.00", "2026-11-30T16:00:01Z",
                     gateway="xendit", ref="qrpy_aaa"),
            captured("static-qr-7", "12000.00", "90.00", "2026-12-01T02:00:00Z",
                     gateway="xendit", ref="qrpy_zzz"),
            captured("static-qr-7", "25000.00", "200.00", "2026-12-01T03:00:00Z",
                     gateway="xendit", ref="qrpy_bbb"),
            refunded("ord-x9", "5000.00", "2026-12-01T05:00:00Z", gateway="xendit", ref="rfd-ccc"),
        ]
    )  # fmt: skip
    findings = reconcile(rows, ledger, gateway="xendit", date="2026-12-01")
    assert [entry["reference"] for entry in findings.matched] == ["qrpy_aaa", "rfd-ccc"]
    assert [entry["reference"] for entry in findings.fee_mismatch] == ["qrpy_bbb"]
    assert findings.fee_mismatch[0]["report_fee"] == "175.00"
    assert findings.fee_mismatch[0]["ledger_fee"] == "200.00"
    assert [entry["reference"] for entry in findings.missing_in_ledger] == ["qrpy_eee"]
    assert [entry["reference"] for entry in findings.missing_in_report] == ["qrpy_zzz"]
    assert findings.amount_mismatch == []
    assert findings.summary["report_rows_ignored"] == 2


def test_an_order_with_two_payments_pairs_equal_amounts_first() -> None:
    rows = parse_report(
        MIDTRANS_HEADER + "2026-12-01 10:00:00,o,payment,QRIS,settlement,300.00,\n"
        "2026-12-01 11:00:00,o,payment,QRIS,settlement,100.00,\n",
        gateway="midtrans",
    )
    ledger = seal(
        [
            captured("o", "100.00", "0.00", "2026-12-01T01:00:00Z"),
            captured("o", "250.00", "0.00", "2026-12-01T02:00:00Z"),
        ]
    )
    findings = reconcile(rows, ledger, gateway="midtrans", date="2026-12-01")
    assert [e["report_amount"] for e in findings.matched] == ["100.00"]
    assert [(e["report_amount"], e["ledger_amount"]) for e in findings.amount_mismatch] == [
        ("300.00", "250.00")
    ]


def test_refund_lines_naming_the_refunded_payment_match_the_ledger_s_refunds() -> None:
    """Midtrans' report gives a refund line the payment's Transaction ID; the
    ledger knows each refund by its refund_key. They pair by order and amount."""
    header = MIDTRANS_HEADER.rstrip("\n") + ",Transaction ID\n"
    rows = parse_report(
        header + "2026-12-01 10:00:00,a2,payment,QRIS,settlement,50000.00,350.00,txn-a2\n"
        "2026-12-01 11:00:00,a2,refund,QRIS,refund,-30000.00,,txn-a2\n"
        "2026-12-01 12:00:00,a2,refund,QRIS,refund,-20000.00,,txn-a2\n",
        gateway="midtrans",
    )
    ledger = seal(
        [
            captured("a2", "50000.00", "350.00", "2026-12-01T01:00:00Z", ref="txn-a2"),
            refunded("a2", "30000.00", "2026-12-01T03:00:00Z", ref="rk-a2-1"),
            refunded("a2", "20000.00", "2026-12-01T04:00:00Z", ref="rk-a2-2"),
        ]
    )
    findings = reconcile(rows, ledger, gateway="midtrans", date="2026-12-01")
    assert findings.ok, findings.as_dict()
    assert len(findings.matched) == 3


def test_two_payments_with_different_references_never_pair() -> None:
    rows = parse_report(
        MIDTRANS_HEADER.rstrip("\n") + ",Transaction ID\n"
        "2026-12-01 10:00:00,o,payment,QRIS,settlement,100.00,,txn-report\n",
        gateway="midtrans",
    )
    ledger = seal([captured("o", "100.00", "0.00", "2026-12-01T01:00:00Z", ref="txn-ledger")])
    findings = reconcile(rows, ledger, gateway="midtrans", date="2026-12-01")
    assert (len(findings.missing_in_ledger), len(findings.missing_in_report)) == (1, 1)


def test_columns_override_maps_other_headers() -> None:
    report = (
        "\ufeffWaktu;ID Pesanan;Tipe;Nominal;Biaya;Keterangan\n"
        "2026-12-01T09:00:00+08:00;o1;Payment;150000.00;1050.00;x\n"
    )
    rows = parse_report(
        report,
        gateway="midtrans",
        columns={"time": "Waktu", "order_id": "id pesanan", "type": "Tipe",
                 "amount": "Nominal", "fee": "Biaya"},
    )  # fmt: skip
    (row,) = rows
    assert (row.kind, row.order_id, row.amount_minor, row.fee_minor) == (
        "payment",
        "o1",
        15000000,
        105000,
    )
    assert row.time == datetime(2026, 12, 1, 1, 0, tzinfo=UTC)


def test_headers_match_loosely_and_the_first_of_a_name_wins() -> None:
    # with Transaction Split, Midtrans appends a second "Transaction Type" column
    report = (
        " date & time ,ORDER ID,Transaction Type,Channel,Status,Amount,Fee,"
        "Transaction Type,Sender\n"
        "2026-12-01 09:00:00,o1,payment,QRIS,settlement,10.00,0.07,split,s\n"
    )
    (row,) = parse_report(report, gateway="midtrans")
    assert (row.kind, row.raw_type) == ("payment", "payment")


# -- malformed reports ---------------------------------------------------------


def error_of(source: bytes | str, **kwargs) -> ReportError:
    kwargs.setdefault("gateway", "midtrans")
    with pytest.raises(ReportError) as caught:
        parse_report(source, **kwargs)
    error = caught.value
    assert isinstance(error, ValidationError)
    assert error.code == "invalid_report" == error.as_dict()["code"]
    return error


@pytest.mark.parametrize("amount", ["1e5", "150000.005", "10.000", "1,000.00", "Rp 10000", "abc"])
def test_a_bad_amount_names_line_and_column(amount: str) -> None:
    error = error_of(
        MIDTRANS_HEADER + "2026-12-01 09:00:00,o1,payment,QRIS,settlement,10.00,0.07\n"
        f'2026-12-01 09:00:00,o2,payment,QRIS,settlement,"{amount}",0.07\n'
    )
    assert error.message.startswith("line 3, column 'Amount': ")
    assert (error.line, error.column, error.field) == (3, "Amount", "amount")


def test_a_bad_fee_names_its_column() -> None:
    error = error_of(MIDTRANS_HEADER + "2026-12-01 09:00:00,o1,payment,QRIS,settlement,10.00,1e2\n")
    assert (error.line, error.column) == (2, "Fee")


def test_an_empty_amount_is_refused() -> None:
    error = error_of(MIDTRANS_HEADER + "2026-12-01 09:00:00,o1,payment,QRIS,settlement,,\n")
    assert "amount is empty" in error.message


def test_a_missing_required_header_is_named() -> None:
    error = error_of("Date & Time,Order ID,Transaction Type,Status,Fee\n2026-12-01,o,payment,x,1\n")
    assert error.line == 1
    assert "missing required column(s) 'Amount' for amount" in error.message
    assert "'Date & Time', 'Order ID'" in error.message  # what the header has


def test_a_mapped_header_that_is_absent_is_named() -> None:
    error = error_of(MIDTRANS_HEADER, columns={"reference": "Transaction ID"})
    assert error.column == "Transaction ID" and error.field == "reference"


def test_an_unknown_field_in_columns_is_refused() -> None:
    assert error_of(MIDTRANS_HEADER, columns={"amunt": "Amount"}).field == "columns"


@pytest.mark.parametrize(
    ("junk", "expected"),
    [
        (bytes(range(256)), "not UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00", "NUL byte"),  # an XLSX is a zip
        (b"Date & Time,Order ID\n\x00\x01\x02", "line 2: NUL byte"),
    ],
)
def test_binary_junk_is_refused(junk: bytes, expected: str) -> None:
    assert expected in error_of(junk).message


def test_invalid_utf8_names_its_line() -> None:
    error = error_of(MIDTRANS_HEADER.encode() + b"2026-12-01 09:00:00,caf\xe9,payment,,,1.00,\n")
    assert error.line == 2 and "not UTF-8" in error.message


def test_a_short_row_is_refused() -> None:
    error = error_of(MIDTRANS_HEADER + "2026-12-01 09:00:00,o1,payment,QRIS\n")
    assert error.line == 2 and "4 fields, the header has 7" in error.message


def test_an_unclosed_quote_is_refused() -> None:
    error = error_of(MIDTRANS_HEADER + '2026-12-01 09:00:00,"o1,payment,QRIS,settlement,1.00,\n')
    assert "not readable as CSV" in error.message


def test_a_bad_time_names_its_column() -> None:
    error = error_of(MIDTRANS_HEADER + "01/12/2026 9.00,o1,payment,QRIS,settlement,1.00,\n")
    assert (error.line, error.column, error.field) == (2, "Date & Time", "time")


def test_an_empty_report_is_refused() -> None:
    assert "empty" in error_of(b"").message
    assert "empty" in error_of("\n\n").message


def test_an_unknown_gateway_is_refused() -> None:
    assert error_of(MIDTRANS_HEADER, gateway="doku").field == "gateway"


def test_a_row_without_order_or_reference_is_refused() -> None:
    error = error_of(MIDTRANS_HEADER + "2026-12-01 09:00:00,,payment,QRIS,settlement,1.00,\n")
    assert error.line == 2 and error.column == "Order ID"


def test_ignored_rows_are_not_read_further() -> None:
    rows = parse_report(
        MIDTRANS_HEADER + "not a time,,top up,,success,n/a,\n"
        "2026-12-01 09:00:00,o1,payment,QRIS,deny,junk,\n",
        gateway="midtrans",
    )
    assert [row.ignored for row in rows] == ["type 'top up'", "status 'deny'"]


def test_a_bad_date_is_refused() -> None:
    with pytest.raises(ValidationError, match="YYYY-MM-DD"):
        reconcile([], [], gateway="midtrans", date="1 Dec 2026")


def test_semicolons_leading_blank_lines_and_gateway_case() -> None:
    report = "\n" + MIDTRANS_HEADER.replace(",", ";") + "2026-12-01 09:00:00;o1;Payment;;;1.00;\n"
    (row,) = parse_report(report, gateway="Midtrans")
    assert (row.line, row.order_id, row.amount_minor, row.fee_minor) == (3, "o1", 100, None)
    error = error_of("\nDate & Time,Order ID\n")
    assert error.line == 2
