"""Settlement-report reconciliation: ``omniledger reconcile`` and ``POST /v1/reconciliations``.

The Midtrans report is built here with the default headers documented in
``ledger/audit/settlement_report.py`` (Date & Time, Order ID, Transaction Type, Status,
Amount, Fee, Transaction ID; times in WIB without an offset). Against a
ledger day it holds matching lines plus exactly one line missing from the
ledger, one ledger capture missing from the report and one amount mismatch.
The result is recorded once as a ``reconciliation.recorded`` event; a
malformed report is refused (422 / exit 2) and records nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from .conftest import CliRunner, History, Http, head

DAY = "2026-12-01"
URL = f"/v1/reconciliations?gateway=midtrans&date={DAY}"
HEADER = "Date & Time,Order ID,Transaction Type,Channel,Status,Amount,Fee,Transaction ID"


def report_lines(t: str) -> list[str]:
    """Times in WIB (UTC+7); the day is the WITA (UTC+8) day 2026-12-01.

    Line 5 is the amount mismatch, line 7 is missing in the ledger, lines 8-9
    are ignored (a disbursement, an expired payment), line 10 is another day.
    """
    return [
        HEADER,
        f"2026-12-01 00:30:00,r7-{t},payment,QRIS,settlement,10000.00,70.00,mt-r7-{t}",  # line 2
        f"2026-12-01 09:00:00,r1-{t},payment,QRIS,settlement,150000.00,1050.00,mt-r1-{t}",  # 3
        f"2026-12-01 09:15:00,r2-{t},payment,GoPay,settlement,75000.00,1500.00,",  # 4: by order id
        f"2026-12-01 11:30:00,r4-{t},payment,QRIS,settlement,55000.00,385.00,mt-r4-{t}",  # 5
        f"2026-12-01 12:00:00,r1-{t},refund,QRIS,refund,-50000.00,,mt-rf1-{t}",  # 6
        f"2026-12-01 12:30:00,r9-{t},payment,QRIS,settlement,30000.00,210.00,mt-r9-{t}",  # 7
        "2026-12-01 13:00:00,,disbursement,,success,-100000.00,,",  # 8: ignored
        f"2026-12-01 14:00:00,r8-{t},payment,QRIS,expire,30000.00,0.00,",  # 9: ignored
        f"2026-11-30 20:00:00,r6-{t},payment,QRIS,settlement,40000.00,280.00,mt-r6-{t}",  # 10
    ]


def report(t: str, lines: list[str] | None = None) -> bytes:
    return ("\r\n".join(lines or report_lines(t)) + "\r\n").encode()


async def ledger_day(history: History) -> dict[str, int]:
    """The ledger's side; returns positions by name."""
    t = history.tag
    s = f"s-{t}"
    await history.seller(s)
    pos: dict[str, int] = {}
    orders = {"r1": "150000", "r2": "75000", "r3": "20000", "r4": "50000", "r5": "60000",
              "r6": "40000", "r7": "10000"}  # fmt: skip
    for name, amount in orders.items():
        at = "2026-11-30T09:00:00+08:00"
        await history.place(s, f"{name}-{t}", amount, at)
    pos["r1"] = (await history.capture(f"r1-{t}", "150000", "2026-12-01T10:00:00+08:00",
                                       fee="1050", ref=f"mt-r1-{t}")).position  # fmt: skip
    pos["r2"] = (await history.capture(f"r2-{t}", "75000", "2026-12-01T10:15:00+08:00",
                                       fee="1500", ref=f"mt-r2-{t}")).position  # fmt: skip
    pos["r3"] = (await history.capture(f"r3-{t}", "20000", "2026-12-01T11:00:00+08:00",
                                       fee="140", ref=f"mt-r3-{t}")).position  # fmt: skip
    pos["r4"] = (await history.capture(f"r4-{t}", "50000", "2026-12-01T12:30:00+08:00",
                                       fee="350", ref=f"mt-r4-{t}")).position  # fmt: skip
    pos["rf1"] = (await history.refund(f"r1-{t}", "50000", "2026-12-01T13:00:00+08:00",
                                       ref=f"mt-rf1-{t}")).position  # fmt: skip
    # another gateway on the same day, and midtrans on the day before: not this report's
    await history.capture(f"r5-{t}", "60000", "2026-12-01T10:00:00+08:00", fee="420",
                          gateway="xendit", ref=f"x-r5-{t}")  # fmt: skip
    await history.capture(f"r6-{t}", "40000", "2026-11-30T21:00:00+08:00", fee="280",
                          ref=f"mt-r6-{t}")  # fmt: skip
    # 17:30Z on 2026-11-30 is 01:30 on 2026-12-01 in Makassar: part of this day
    pos["r7"] = (await history.capture(f"r7-{t}", "10000", "2026-11-30T17:30:00Z", fee="70",
                                       ref=f"mt-r7-{t}")).position  # fmt: skip
    return pos


def check_findings(result: dict[str, Any], t: str, pos: dict[str, int]) -> None:
    findings = result["findings"]
    assert result["gateway"] == "midtrans" and result["date"] == DAY

    assert [(f["order_id"], f["line"], f["position"]) for f in findings["missing_in_ledger"]] == [
        (f"r9-{t}", 7, None)
    ]
    assert [(f["order_id"], f["line"], f["position"]) for f in findings["missing_in_report"]] == [
        (f"r3-{t}", None, pos["r3"])
    ]
    (mismatch,) = findings["amount_mismatch"]
    assert (mismatch["order_id"], mismatch["line"], mismatch["position"]) == (
        f"r4-{t}",
        5,
        pos["r4"],
    )
    assert (mismatch["report_amount"], mismatch["ledger_amount"]) == ("55000.00", "50000.00")
    assert findings["fee_mismatch"] == []
    matched = {(f["type"], f["order_id"], f["line"], f["position"]) for f in findings["matched"]}
    assert matched == {
        ("payment", f"r7-{t}", 2, pos["r7"]),
        ("payment", f"r1-{t}", 3, pos["r1"]),
        ("payment", f"r2-{t}", 4, pos["r2"]),
        ("refund", f"r1-{t}", 6, pos["rf1"]),
    }
    summary = result["summary"]
    assert summary["ok"] is False
    assert (summary["matched"], summary["missing_in_ledger"], summary["missing_in_report"],
            summary["amount_mismatch"], summary["fee_mismatch"]) == (4, 1, 1, 1, 0)  # fmt: skip
    assert summary["report_rows_total"] == 9
    assert summary["report_rows_ignored"] == 2
    assert summary["report_rows_other_days"] == 1


async def reconciliations(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT notification_id FROM omniledger_events WHERE type = 'reconciliation.recorded'"
        " ORDER BY notification_id"
    )


async def test_cli_finds_exactly_the_three_differences_and_records_them(
    history: History, http: Http, apool: asyncpg.Pool, cli: CliRunner, tmp_path: Path
) -> None:
    pos = await ledger_day(history)
    path = tmp_path / "midtrans.csv"
    path.write_bytes(report(history.tag))
    before, _ = await head(apool)

    run = await cli("reconcile", "--gateway", "midtrans", "--report", str(path),
                    "--date", DAY, "--json")  # fmt: skip
    assert run.rc == 1, (run.out, run.err)  # differences found
    result = run.json()
    check_findings(result, history.tag, pos)

    # recorded as one reconciliation.recorded event at the head of the log
    assert result["recorded"]["status"] == "recorded"
    assert result["recorded"]["position"] == before + 1 == (await head(apool))[0]
    (event,) = [e for e in await http.events() if e["type"] == "reconciliation.recorded"]
    assert event["position"] == before + 1
    assert event["data"]["gateway"] == "midtrans" and event["data"]["date"] == DAY
    # the differences, whole; the matched lines only as counts (the event stays small)
    differences = {k: v for k, v in result["findings"].items() if k != "matched"}
    assert event["data"]["findings"] == differences
    assert event["data"]["summary"] == result["summary"]
    assert (await cli("verify")).rc == 0  # and the chain still holds


async def test_http_gives_the_same_findings_and_records_once(
    history: History, http: Http, apool: asyncpg.Pool, cli: CliRunner, tmp_path: Path
) -> None:
    pos = await ledger_day(history)
    body = report(history.tag)
    before, _ = await head(apool)

    status, first = await http.post_bytes(URL, body)
    assert status == 200, first
    check_findings(first, history.tag, pos)
    assert first["recorded"]["status"] == "recorded"
    after_first = await head(apool)
    assert after_first[0] == before + 1

    status, second = await http.post_bytes(URL, body)
    assert status == 200, second
    assert second["findings"] == first["findings"]
    assert second["recorded"]["status"] == "duplicate"
    assert second["recorded"]["position"] == first["recorded"]["position"]
    assert await head(apool) == after_first

    # the same report through the command line: the same findings, still recorded once
    path = tmp_path / "midtrans.csv"
    path.write_bytes(body)
    run = await cli("reconcile", "--gateway", "midtrans", "--report", str(path), "--date", DAY)
    assert run.rc == 1, run.err
    assert run.json()["findings"] == first["findings"]
    assert run.json()["recorded"]["status"] == "duplicate"
    assert await head(apool) == after_first
    assert len(await reconciliations(apool)) == 1


async def test_a_report_that_matches_exits_0(
    history: History, apool: asyncpg.Pool, cli: CliRunner, tmp_path: Path
) -> None:
    pos = await ledger_day(history)
    t = history.tag
    lines = [line for n, line in enumerate(report_lines(t), start=1) if n not in (5, 7)]
    lines.append(f"2026-12-01 10:00:00,r3-{t},payment,QRIS,settlement,20000.00,140.00,mt-r3-{t}")
    lines.append(f"2026-12-01 11:30:00,r4-{t},payment,QRIS,settlement,50000.00,350.00,mt-r4-{t}")
    path = tmp_path / "clean.csv"
    path.write_bytes(report(t, lines))
    run = await cli(
        "reconcile", "--gateway", "midtrans", "--report", str(path), "--date", DAY, "--json"
    )
    assert run.rc == 0, (run.out, run.err)
    result = run.json()
    assert result["summary"]["ok"] is True
    assert len(result["findings"]["matched"]) == 6
    assert {f["position"] for f in result["findings"]["matched"]} == set(pos.values())


async def test_rerunning_a_report_after_the_ledger_caught_up(
    history: History, http: Http, apool: asyncpg.Pool
) -> None:
    """The missing capture arrives late; the auditor posts the same report again.

    The answer must be today's findings (no longer missing in the ledger), and
    what is answered must be what the log records - not a 409 for re-asking.
    """
    await ledger_day(history)
    t = history.tag
    body = report(t)
    status, first = await http.post_bytes(URL, body)
    assert status == 200, first
    assert len(first["findings"]["missing_in_ledger"]) == 1

    await history.place(f"s-{t}", f"r9-{t}", "30000", "2026-12-01T09:00:00+08:00")
    await history.capture(
        f"r9-{t}", "30000", "2026-12-01T13:30:00+08:00", fee="210", ref=f"mt-r9-{t}"
    )

    status, second = await http.post_bytes(URL, body)
    assert status == 200, second
    assert second["findings"]["missing_in_ledger"] == []
    assert len(second["findings"]["matched"]) == 5
    recorded = {
        e["position"]: e for e in await http.events() if e["type"] == "reconciliation.recorded"
    }
    assert recorded[second["recorded"]["position"]]["data"]["findings"] == {
        k: v for k, v in second["findings"].items() if k != "matched"
    }


async def test_cli_maps_other_headers_with_columns(
    history: History, cli: CliRunner, tmp_path: Path
) -> None:
    pos = await ledger_day(history)
    lines = report_lines(history.tag)
    lines[0] = "Waktu,ID Pesanan,Tipe,Kanal,Status,Jumlah,Biaya,ID Transaksi"
    path = tmp_path / "renamed.csv"
    path.write_bytes(report(history.tag, lines))
    run = await cli(
        "reconcile", "--gateway", "midtrans", "--report", str(path), "--date", DAY, "--json",
        "--columns", "time=Waktu", "order_id=ID Pesanan", "type=Tipe", "amount=Jumlah",
        "fee=Biaya", "reference=ID Transaksi",
    )  # fmt: skip
    assert run.rc == 1, (run.out, run.err)
    check_findings(run.json(), history.tag, pos)


# -- malformed reports: refused, nothing recorded -------------------------------------------


def _bad_amount(t: str) -> bytes:
    lines = report_lines(t)
    lines[3] = lines[3].replace("75000.00", "75.000,00")
    return report(t, lines).replace(b"75.000,00", b'"75.000,00"')


def _amount_with_letters(t: str) -> bytes:
    lines = report_lines(t)
    lines[2] = lines[2].replace("150000.00", "Rp150000")
    return report(t, lines)


def _missing_amount_header(t: str) -> bytes:
    lines = [
        ",".join(c for i, c in enumerate(line.split(",")) if i != 5) for line in report_lines(t)
    ]
    return report(t, lines)


def _no_header_at_all(t: str) -> bytes:
    return report(t, report_lines(t)[1:])


def _binary_junk(t: str) -> bytes:
    return b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)) * 4


def _latin1(t: str) -> bytes:
    lines = report_lines(t)
    lines[4] = lines[4].replace("QRIS", "Caf\xe9")
    return "\r\n".join(lines).encode("latin-1")


def _short_row(t: str) -> bytes:
    lines = report_lines(t)
    lines[3] = ",".join(lines[3].split(",")[:4])
    return report(t, lines)


def _bad_time(t: str) -> bytes:
    lines = report_lines(t)
    lines[2] = lines[2].replace("2026-12-01 09:00:00", "01/12/2026 09:00")
    return report(t, lines)


def _unclosed_quote(t: str) -> bytes:
    lines = report_lines(t)
    lines[2] = lines[2].replace(f"r1-{t}", f'"r1-{t}')
    return report(t, lines)


MALFORMED = {
    "amount with a thousands dot": (_bad_amount, 4),
    "amount with letters": (_amount_with_letters, 3),
    "no Amount column": (_missing_amount_header, 1),
    "no header line": (_no_header_at_all, 1),
    "binary junk (xlsx)": (_binary_junk, None),
    "latin-1 bytes": (_latin1, 5),
    "short row": (_short_row, 4),
    "unreadable time": (_bad_time, 3),
    "unclosed quote": (_unclosed_quote, None),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_report_is_refused_and_records_nothing(
    case: str, history: History, http: Http, apool: asyncpg.Pool, cli: CliRunner, tmp_path: Path
) -> None:
    await ledger_day(history)
    make, line = MALFORMED[case]
    body = make(history.tag)
    before = await head(apool)

    status, answer = await http.post_bytes(URL, body)
    assert status == 422, answer
    error = answer["error"]
    assert error["code"] == "invalid_report", error
    assert error["message"]
    if line is not None:
        assert f"line {line}" in error["message"], error

    path = tmp_path / "bad.csv"
    path.write_bytes(body)
    run = await cli("reconcile", "--gateway", "midtrans", "--report", str(path), "--date", DAY)
    assert run.rc == 2, (run.out, run.err)
    assert run.err.startswith("omniledger: "), run.err
    assert "Traceback" not in run.err
    if line is not None:
        assert f"line {line}" in run.err, run.err
    assert run.out == ""

    assert await head(apool) == before
    assert await reconciliations(apool) == []


@pytest.mark.parametrize(
    ("url", "body", "status"),
    [
        ("/v1/reconciliations?gateway=paypal&date=2026-12-01", None, 422),
        ("/v1/reconciliations?date=2026-12-01", None, 422),
        ("/v1/reconciliations?gateway=midtrans", None, 422),
        ("/v1/reconciliations?gateway=midtrans&date=2026-13-01", None, 422),
        ("/v1/reconciliations?gateway=midtrans&date=01-12-2026", None, 422),
        (URL, b"", 400),
    ],
)
async def test_bad_requests_record_nothing(
    url: str, body: bytes | None, status: int, history: History, http: Http, apool: asyncpg.Pool
) -> None:
    await ledger_day(history)
    before = await head(apool)
    got, answer = await http.post_bytes(url, report(history.tag) if body is None else body)
    assert got == status, answer
    assert "code" in answer["error"]
    assert await head(apool) == before


async def test_only_admins_reconcile(history: History, http: Http, apool: asyncpg.Pool) -> None:
    await ledger_day(history)
    before = await head(apool)
    for role, seller in (("auditor", None), ("seller", f"s-{history.tag}"), ("gateway", None)):
        headers = await http.key(role, seller)
        status, answer = await http.post_bytes(URL, report(history.tag), headers=headers)
        assert status == 403, (role, answer)
    status, answer = await http.post_bytes(
        URL, report(history.tag), headers={"Authorization": "Bearer nope"}
    )
    assert status == 401, answer
    assert await head(apool) == before


@pytest.mark.parametrize(
    "args",
    [
        ["--columns", "amount"],  # no '='
        ["--columns", "colour=Amount"],  # unknown field
        ["--columns", "amount=Jumlah"],  # header not in the report
        ["--date", "2026-13-01"],
    ],
)
async def test_cli_usage_errors_exit_2(
    args: list[str], history: History, apool: asyncpg.Pool, cli: CliRunner, tmp_path: Path
) -> None:
    await ledger_day(history)
    path = tmp_path / "midtrans.csv"
    path.write_bytes(report(history.tag))
    before = await head(apool)
    run = await cli("reconcile", "--gateway", "midtrans", "--report", str(path),
                    *(args if "--date" in args else [*args, "--date", DAY]))  # fmt: skip
    assert run.rc == 2, (run.out, run.err)
    assert run.err.startswith("omniledger: ") and "Traceback" not in run.err
    assert await head(apool) == before


async def test_cli_missing_report_file_exits_2(cli: CliRunner, tmp_path: Path) -> None:
    run = await cli("reconcile", "--gateway", "midtrans", "--report", str(tmp_path / "nope.csv"),
                    "--date", DAY)  # fmt: skip
    assert run.rc == 2
    assert "cannot read" in run.err


async def test_a_large_report_records_a_small_event(
    history: History, http: Http, apool: asyncpg.Pool, cli: CliRunner, tmp_path: Path
) -> None:
    """Thousands of report lines made a reconciliation event of megabytes, which
    the relay could not publish (NATS refuses messages over 1 MiB): it stalled."""
    t = history.tag
    lines = [HEADER] + [
        f"{DAY} 10:{i // 60 % 60:02d}:{i % 60:02d},o{i}-{t},payment,QRIS,settlement,"
        f"1000.00,7.00,mt-{i}-{t}"
        for i in range(3000)
    ]
    path = tmp_path / "big.csv"
    path.write_bytes(report(t, lines))
    run = await cli("reconcile", "--gateway", "midtrans", "--report", str(path),
                    "--date", DAY, "--json")  # fmt: skip
    result = run.json()
    assert len(result["findings"]["missing_in_ledger"]) == 3000  # the answer is whole
    size = await apool.fetchval(
        "SELECT length(state) FROM omniledger_events WHERE type = 'reconciliation.recorded'"
    )
    assert size < 256 * 1024, size
    (event,) = [e for e in await http.events() if e["type"] == "reconciliation.recorded"]
    assert len(event["data"]["findings"]["missing_in_ledger"]) == 200
    assert event["data"]["findings"]["missing_in_ledger_left_out"] == 2800
    assert event["data"]["summary"]["missing_in_ledger"] == 3000


async def test_a_report_of_another_day_is_not_reported_clean(
    history: History, cli: CliRunner, tmp_path: Path
) -> None:
    """Every row of the report falls on another local day: nothing was compared,
    which must not read as "no differences" (exit 0)."""
    await ledger_day(history)
    path = tmp_path / "midtrans.csv"
    path.write_bytes(report(history.tag))
    run = await cli("reconcile", "--gateway", "midtrans", "--report", str(path),
                    "--date", "2026-11-20", "--json")  # fmt: skip
    assert run.rc == 1, (run.out, run.err)
    assert "is it the report of another day?" in run.err
    run = await cli("reconcile", "--gateway", "midtrans", "--report", str(path),
                    "--date", DAY, "--json")  # fmt: skip
    assert "1 report rows fall on other days" in run.err, run.err


async def test_a_dry_run_records_nothing_and_ignored_rows_say_why(
    history: History, apool: asyncpg.Pool, cli: CliRunner, tmp_path: Path
) -> None:
    """Issue 13: every trial run wrote a permanent reconciliation event, and the
    ignored rows were only counted. ``--dry-run`` compares and prints, records
    nothing; the summary counts the ignored rows by reason."""
    pos = await ledger_day(history)
    path = tmp_path / "midtrans.csv"
    path.write_bytes(report(history.tag))
    before = await head(apool)
    run = await cli("reconcile", "--gateway", "midtrans", "--report", str(path),
                    "--date", DAY, "--json", "--dry-run")  # fmt: skip
    assert run.rc == 1, (run.out, run.err)  # the same differences are found
    result = run.json()
    check_findings(result, history.tag, pos)
    assert result["recorded"] is None and result["dry_run"] is True
    assert await head(apool) == before, "a dry run leaves no trace in the log"
    assert result["summary"]["report_rows_ignored"] == 2
    assert result["summary"]["report_rows_ignored_reasons"] == {
        "type 'disbursement'": 1,
        "status 'expire'": 1,
    }


async def test_a_missing_column_names_the_flag_that_maps_it(
    history: History, cli: CliRunner, tmp_path: Path
) -> None:
    lines = report_lines(history.tag)
    lines[0] = lines[0].replace(",Amount,", ",Gross Amount,")
    path = tmp_path / "renamed.csv"
    path.write_bytes(report(history.tag, lines))
    run = await cli("reconcile", "--gateway", "midtrans", "--report", str(path), "--date", DAY)
    assert run.rc == 2, (run.out, run.err)
    assert "--columns FIELD=HEADER" in run.err and "columns={" not in run.err, run.err
