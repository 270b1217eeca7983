"""Gateway settlement reports against the ledger: ``omniledger reconcile`` and
``POST /v1/reconciliations``.

What lives here: :func:`parse_report` (a gateway's CSV report -> rows with
amounts in minor units), :func:`reconcile` (rows of one local day against
the ledger's ``payment.captured`` / ``refund.issued`` messages of that gateway
and day -> :class:`Findings`) and :func:`format_table`. Pure: no SQL, no HTTP;
the caller reads the file or the request body and the log.

Columns are found **by name**, as Midtrans advises (its exports gain columns
over time, and with Transaction Split a second ``Transaction Type`` is
appended: the first one of a name wins). A header matches after trimming,
case folding, and treating runs of spaces, ``_``, ``.`` and ``-`` alike, so
``product_id``, ``Product ID`` and ``PRODUCT-ID`` are one name. Each of our
fields has default header names per gateway (the first present is used);
``columns`` overrides one field with one exact header name:

=========  ==========================  ========================================
field      midtrans (UI labels)        xendit (transaction report fields)
=========  ==========================  ========================================
time       Date & Time                 created, transaction_date
order_id   Order ID                    reference_id, reference, external_id
type       Transaction Type            type, transaction_type
status     Status                      status
amount     Amount                      amount
fee        Fee                         fee.xendit_fee, xendit_fee, fee
reference  Transaction ID  [GUESS]     product_id, payment_id
currency   -                           currency
=========  ==========================  ========================================

Midtrans' labels are the documented UI labels of the balance statement
export; the exact CSV headers are not published, hence ``columns``.
Required: amount, type, time, and order_id or reference. A time without an
offset is read in the gateway's report time zone (Midtrans: Asia/Jakarta,
like its notifications; Xendit: UTC).

Row kinds: type ``payment`` -> a payment, ``refund`` / ``partial refund`` -> a
refund (any case; Xendit's ``PAYMENT``/``REFUND``); anything else
(disbursement, withdrawal, top up, fees, ...) and rows whose status is a
failure (pending, expire(d), cancel(l)ed, deny, failure, failed, voided,
reversed) are kept as *ignored* and only counted. A refund's or fee's sign is
dropped (balance statements print debits negative); the kind gives the
direction. Amounts are plain decimals with at most the currency's digits:
``10.000`` or ``1e4`` are refused, never guessed.

Matching key, per kind (payment or refund) on the local day of ``date``:

1. the report's ``reference`` equals the ledger's ``gateway_ref``;
2. otherwise the report's ``order_id`` equals the ledger's ``order_id`` (the
   gateway's order reference, CONTRACT section 3), preferring an equal amount
   when an order has several, and never pairing two that both carry
   references that differ.

A pair with a different amount or currency is an ``amount_mismatch``; else a
payment whose report fee is given and differs from the ledger's ``fee`` is a
``fee_mismatch``; else ``matched``. Each row and message lands in exactly one
list. The day is the local calendar day in the deployment's time zone, of the
report's time and of the ledger's ``occurred_at``; a payment a few seconds
from midnight may fall on different days on the two sides and show as
missing on both.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from ledger.domain import balances
from ledger.domain.commands import parse_day
from ledger.domain.errors import ValidationError
from ledger.domain.money import format_minor, parse_amount, parse_currency

__all__ = [
    "DEFAULT_COLUMNS",
    "Findings",
    "ReportError",
    "ReportRow",
    "format_table",
    "parse_report",
    "reconcile",
]

FIELDS: Final = ("order_id", "reference", "type", "amount", "fee", "status", "time", "currency")

DEFAULT_COLUMNS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "midtrans": {
        "time": ("Date & Time",),
        "order_id": ("Order ID",),
        "type": ("Transaction Type",),
        "status": ("Status",),
        "amount": ("Amount",),
        "fee": ("Fee",),
        "reference": ("Transaction ID",),
    },
    "xendit": {
        "time": ("created", "transaction_date"),
        "order_id": ("reference_id", "reference", "external_id"),
        "type": ("type", "transaction_type"),
        "status": ("status",),
        "amount": ("amount",),
        "fee": ("fee.xendit_fee", "xendit_fee", "fee"),
        "reference": ("product_id", "payment_id"),
        "currency": ("currency",),
    },
}

#: The zone of a report time written without an offset.
REPORT_TIMEZONE: Final[dict[str, str]] = {"midtrans": "Asia/Jakarta", "xendit": "UTC"}

#: Limits: a day's report of one gateway is far below these.
REPORT_BYTES_MAX: Final[int] = 64 << 20
REPORT_ROWS_MAX: Final[int] = 1_000_000

_KINDS: Final = {"payment": "payment", "refund": "refund", "partial refund": "refund"}
_FAILED_STATUSES: Final = frozenset(
    {"pending", "expire", "expired", "cancel", "cancelled", "canceled", "deny", "denied",
     "failure", "failed", "voided", "void", "reversed"}
)  # fmt: skip
_LEDGER_KINDS: Final = balances.GATEWAY_MONEY_TYPES
_SEPARATORS: Final = re.compile(r"[\s_.\-]+")


class ReportError(ValidationError):
    """A report that cannot be read; names the ``line`` and ``column`` when known."""

    code = "invalid_report"

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        column: str | None = None,
        field: str | None = None,
    ) -> None:
        details: dict[str, Any] = {}
        if line is not None:
            details["line"] = line
        if column is not None:
            details["column"] = column
        super().__init__(message, field=field, **details)
        self.line = line
        self.column = column


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One data row of a report. ``kind`` is ``payment``, ``refund`` or ``None`` (ignored).

    An ignored row keeps only ``line``, ``raw_type``, ``status`` and ``ignored``
    (why); its amount is not read.
    """

    line: int
    kind: str | None
    raw_type: str
    status: str | None
    order_id: str | None = None
    reference: str | None = None
    amount_minor: int | None = None
    fee_minor: int | None = None
    currency: str = "IDR"
    time: datetime | None = None
    ignored: str | None = None


@dataclass(frozen=True, slots=True)
class _LedgerItem:
    kind: str
    order_id: str | None
    gateway_ref: str | None
    amount_minor: int
    fee_minor: int | None
    currency: str
    position: int | None
    occurred_at: str


@dataclass(frozen=True)
class Findings:
    """The outcome of one reconciliation; every list holds JSON-ready dicts."""

    gateway: str
    date: Date
    timezone: str
    matched: list[dict[str, Any]] = field(default_factory=list)
    missing_in_ledger: list[dict[str, Any]] = field(default_factory=list)
    missing_in_report: list[dict[str, Any]] = field(default_factory=list)
    amount_mismatch: list[dict[str, Any]] = field(default_factory=list)
    fee_mismatch: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every row and message of the day matched."""
        return not (
            self.missing_in_ledger
            or self.missing_in_report
            or self.amount_mismatch
            or self.fee_mismatch
        )

    def as_dict(self) -> dict[str, Any]:
        """``{gateway, date, timezone, summary, findings: {matched, missing_in_ledger, ...}}``."""
        return {
            "gateway": self.gateway,
            "date": self.date.isoformat(),
            "timezone": self.timezone,
            "summary": dict(self.summary),
            "findings": {name: list(getattr(self, name)) for name in _LISTS},
        }


_LISTS: Final = ("missing_in_ledger", "missing_in_report", "amount_mismatch", "fee_mismatch",
                 "matched")  # fmt: skip


# -- parsing -------------------------------------------------------------------


def _normalise(header: str) -> str:
    return _SEPARATORS.sub(" ", header.strip().casefold()).strip()


def _decode(source: bytes | str) -> str:
    if isinstance(source, str):
        text = source.removeprefix("\ufeff")
    else:
        if len(source) > REPORT_BYTES_MAX:
            raise ReportError(f"the report is larger than {REPORT_BYTES_MAX} bytes")
        text = _decode_bytes(source)
    if (nul := text.find("\x00")) >= 0:
        # csv rejects NUL only on some Python versions; binary junk is refused everywhere
        line = text.count("\n", 0, nul) + 1
        raise ReportError(
            f"line {line}: NUL byte: a binary file (an XLS/XLSX export?), not a CSV report",
            line=line,
        )
    return text


def _decode_bytes(source: bytes) -> str:
    try:
        return source.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = source.count(b"\n", 0, e.start) + 1
        raise ReportError(
            f"line {line}: the report is not UTF-8 text (byte {e.start}: "
            f"{source[e.start : e.start + 1]!r}); export it as CSV in UTF-8",
            line=line,
        ) from e


def _delimiter(text: str) -> str:
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {sep: first.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda sep: (counts[sep], sep == ","))
    return best if counts[best] else ","


def _resolve_columns(
    header: list[str], line: int, gateway: str, columns: Mapping[str, str] | None
) -> dict[str, tuple[int, str]]:
    """Our field -> (index, header as written). Raises for a required one missing."""
    index: dict[str, int] = {}
    for position, name in enumerate(header):
        index.setdefault(_normalise(name), position)
    overrides = dict(columns or {})
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise ReportError(
            f"unknown field(s) {', '.join(unknown)} in columns; known: {', '.join(FIELDS)}",
            field="columns",
        )
    found: dict[str, tuple[int, str]] = {}
    for name in FIELDS:
        if name in overrides:
            wanted = overrides[name]
            if _normalise(wanted) not in index:
                raise ReportError(
                    f"line {line}: missing column {wanted!r} (mapped to {name}); "
                    f"the header has: {_shown(header)}",
                    line=line,
                    column=wanted,
                    field=name,
                )
            found[name] = (index[_normalise(wanted)], wanted)
            continue
        for candidate in DEFAULT_COLUMNS[gateway].get(name, ()):
            if _normalise(candidate) in index:
                at = index[_normalise(candidate)]
                found[name] = (at, header[at].strip())
                break
    missing = [name for name in ("amount", "type", "time") if name not in found]
    if "order_id" not in found and "reference" not in found:
        missing.append("order_id")
    if missing:
        expected = [
            " or ".join(repr(c) for c in DEFAULT_COLUMNS[gateway].get(name, ())) or repr(name)
            for name in missing
        ]
        raise ReportError(
            f"line {line}: missing required column(s) {'; '.join(expected)} "
            f"for {', '.join(missing)}; the header has: {_shown(header)}. "
            "Map them with columns={field: header}",
            line=line,
            column=expected[0],
            field=missing[0],
        )
    return found


def _shown(header: list[str]) -> str:
    text = ", ".join(repr(name.strip()[:40]) for name in header[:30])
    return text + (", ..." if len(header) > 30 else "")


def _minor(text: str, currency: str, *, line: int, column: str, name: str) -> int:
    value = text.strip()
    if value.startswith("-"):
        value = value[1:]
    if not value:
        raise ReportError(
            f"line {line}, column {column!r}: {name} is empty", line=line, column=column, field=name
        )
    try:
        return parse_amount(value, currency, field=name, allow_zero=True)
    except ValidationError as e:
        raise ReportError(
            f"line {line}, column {column!r}: {e.message}", line=line, column=column, field=name
        ) from e


def _time(text: str, zone: ZoneInfo, *, line: int, column: str) -> datetime:
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value.replace("/", "-"))
    except ValueError as e:
        raise ReportError(
            f"line {line}, column {column!r}: time {value[:40]!r} is not "
            "'YYYY-MM-DD HH:MM:SS' or ISO 8601",
            line=line,
            column=column,
            field="time",
        ) from e
    if not 2000 <= moment.year <= 2999:  # as the ledger's own timestamps (and no overflow)
        raise ReportError(
            f"line {line}, column {column!r}: time {value[:40]!r} is not between"
            " 2000-01-01 and 2999-12-31",
            line=line,
            column=column,
            field="time",
        )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def parse_report(
    source: bytes | str,
    *,
    gateway: str,
    columns: Mapping[str, str] | None = None,
    currency: str = "IDR",
    report_timezone: str | None = None,
) -> list[ReportRow]:
    """Parses a gateway's CSV report (bytes as downloaded, or text) into rows.

    ``columns`` maps our field names (order_id, reference, type, amount, fee,
    status, time, currency) to header names, replacing the defaults of
    ``gateway``. ``report_timezone`` is the zone of times written without an
    offset (default per gateway). Raises :class:`ReportError` naming the line
    and column of the first problem.
    """
    gateway = gateway.casefold()
    if gateway not in DEFAULT_COLUMNS:
        raise ReportError(
            f"unknown gateway {gateway!r}; known: {', '.join(DEFAULT_COLUMNS)}", field="gateway"
        )
    default_currency = parse_currency(currency)
    zone = ZoneInfo(report_timezone or REPORT_TIMEZONE[gateway])
    text = _decode(source)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    rows: list[ReportRow] = []
    try:
        header = next(reader, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(reader, None)
        if header is None:
            raise ReportError("the report is empty: no header line", line=1)
        found = _resolve_columns(header, reader.line_num, gateway, columns)
        width = len(header)
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(rows) >= REPORT_ROWS_MAX:
                raise ReportError(f"line {line}: more than {REPORT_ROWS_MAX} rows", line=line)
            if len(record) < width or any(cell.strip() for cell in record[width:]):
                raise ReportError(
                    f"line {line}: {len(record)} fields, the header has {width}", line=line
                )
            rows.append(_row(record, found, line, default_currency, zone))
    except csv.Error as e:
        line = reader.line_num
        raise ReportError(f"line {line}: not readable as CSV ({e})", line=line) from e
    return rows


def _row(
    record: list[str],
    found: dict[str, tuple[int, str]],
    line: int,
    default_currency: str,
    zone: ZoneInfo,
) -> ReportRow:
    def cell(name: str) -> str | None:
        if name not in found:
            return None
        value = record[found[name][0]].strip()
        return value or None

    raw_type = cell("type") or ""
    status = cell("status")
    kind = _KINDS.get(_normalise(raw_type))
    if kind is None:
        return ReportRow(line, None, raw_type, status, ignored=f"type {raw_type!r}")
    if status is not None and _normalise(status) in _FAILED_STATUSES:
        return ReportRow(line, None, raw_type, status, ignored=f"status {status!r}")
    order_id, reference = cell("order_id"), cell("reference")
    if order_id is None and reference is None:
        column = found.get("order_id", found.get("reference", (0, "")))[1]
        raise ReportError(
            f"line {line}: a {kind} with neither order id nor reference",
            line=line,
            column=column,
            field="order_id",
        )
    row_currency = default_currency
    if (code := cell("currency")) is not None:
        try:
            row_currency = parse_currency(code)
        except ValidationError as e:
            column = found["currency"][1]
            raise ReportError(
                f"line {line}, column {column!r}: {e.message}",
                line=line,
                column=column,
                field="currency",
            ) from e
    amount_column = found["amount"][1]
    amount = _minor(
        record[found["amount"][0]], row_currency, line=line, column=amount_column, name="amount"
    )
    fee_text = cell("fee")
    fee = (
        None
        if fee_text is None
        else _minor(fee_text, row_currency, line=line, column=found["fee"][1], name="fee")
    )
    time_text = cell("time")
    if time_text is None:
        raise ReportError(
            f"line {line}, column {found['time'][1]!r}: time is empty",
            line=line,
            column=found["time"][1],
            field="time",
        )
    moment = _time(time_text, zone, line=line, column=found["time"][1])
    return ReportRow(
        line, kind, raw_type, status, order_id, reference, amount, fee, row_currency, moment
    )


# -- reconciling ---------------------------------------------------------------


def _ledger_item(
    message: dict[str, Any], gateway: str, zone: ZoneInfo, day: Date
) -> _LedgerItem | None:
    kind = _LEDGER_KINDS.get(str(message.get("type")))
    data = message.get("data")
    if kind is None or not isinstance(data, dict):
        return None
    if str(data.get("gateway", "")).casefold() != gateway:
        return None
    occurred_at = message.get("occurred_at")
    try:
        moment = datetime.fromisoformat(str(occurred_at))
        if moment.tzinfo is None:
            raise ValueError("no offset")
        local_day = moment.astimezone(zone).date()
        if local_day != day:
            return None
        currency = parse_currency(data.get("currency"))
        amount = parse_amount(data["amount"], currency)
        fee = (
            parse_amount(data.get("fee") or "0", currency, field="fee", allow_zero=True)
            if kind == "payment"
            else None
        )
    except (KeyError, TypeError, ValueError, ValidationError) as e:
        raise ValidationError(
            f"ledger message at position {message.get('position')} cannot be reconciled: {e}",
            field="data",
        ) from e
    return _LedgerItem(
        kind,
        data.get("order_id"),
        data.get("gateway_ref"),
        amount,
        fee,
        currency,
        message.get("position"),
        str(occurred_at),
    )


def _money(minor: int | None, currency: str) -> str | None:
    return None if minor is None else format_minor(minor, currency)


def _finding(row: ReportRow | None, item: _LedgerItem | None) -> dict[str, Any]:
    """One finding: the report side (``line``), the ledger side (``position``) or both."""
    entry: dict[str, Any] = dict.fromkeys(
        ("type", "order_id", "reference", "gateway_ref", "currency", "report_amount",
         "ledger_amount", "report_fee", "ledger_fee", "line", "position", "report_time",
         "occurred_at")
    )  # fmt: skip
    if item is not None:
        entry.update(
            type=item.kind,
            order_id=item.order_id,
            reference=item.gateway_ref,
            gateway_ref=item.gateway_ref,
            currency=item.currency,
            ledger_amount=_money(item.amount_minor, item.currency),
            ledger_fee=_money(item.fee_minor, item.currency),
            position=item.position,
            occurred_at=item.occurred_at,
        )
    if row is not None:
        entry.update(
            type=row.kind,
            order_id=row.order_id or entry["order_id"],
            reference=row.reference or entry["reference"],
            currency=row.currency,
            report_amount=_money(row.amount_minor, row.currency),
            report_fee=_money(row.fee_minor, row.currency),
            line=row.line,
            report_time=row.time.isoformat() if row.time is not None else None,
        )
    return entry


def reconcile(
    report_rows: Iterable[ReportRow],
    ledger_messages: Iterable[dict[str, Any]],
    *,
    gateway: str,
    date: Date | str,
    timezone: str = "Asia/Makassar",
) -> Findings:
    """Compares a report's rows with the ledger's messages of ``gateway`` on local day ``date``.

    ``ledger_messages`` may be the whole log: only ``payment.captured`` and
    ``refund.issued`` of that gateway whose ``occurred_at`` falls on ``date`` in
    ``timezone`` are kept. See the module docstring for the matching key.
    """
    gateway = gateway.casefold()
    zone = ZoneInfo(timezone)
    day = parse_day(date) if isinstance(date, str) else date

    rows: list[ReportRow] = []
    ignored = other_days = total = 0
    for row in report_rows:
        total += 1
        if row.kind is None or row.time is None:
            ignored += 1
        elif row.time.astimezone(zone).date() != day:
            other_days += 1
        else:
            rows.append(row)

    items = [
        item
        for message in ledger_messages
        if (item := _ledger_item(message, gateway, zone, day)) is not None
    ]

    pairs: list[tuple[ReportRow, _LedgerItem]] = []
    taken: set[int] = set()  # indexes into items
    paired_rows: set[int] = set()  # indexes into rows

    by_ref: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    by_order: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        if item.gateway_ref:
            by_ref[item.kind, item.gateway_ref].append(i)
        if item.order_id:
            by_order[item.kind, item.order_id].append(i)

    # 1. by reference = gateway_ref: the gateway's own id for this one transaction
    for r, row in enumerate(rows):
        if row.reference:
            for i in by_ref.get((str(row.kind), row.reference), ()):
                if i not in taken:
                    taken.add(i)
                    paired_rows.add(r)
                    pairs.append((row, items[i]))
                    break

    # 2. by order_id: first the pairs with equal amounts, then the rest in order;
    #    two payments with different references are two transactions and never
    #    pair. Refunds may: the ledger knows a refund by its own key (Midtrans'
    #    refund_key), while a report's refund line carries the refunded
    #    payment's transaction id.
    for equal_only in (True, False):
        for r, row in enumerate(rows):
            if r in paired_rows or not row.order_id:
                continue
            for i in by_order.get((str(row.kind), row.order_id), ()):
                item = items[i]
                if i in taken or (
                    row.kind == "payment"
                    and row.reference
                    and item.gateway_ref
                    and row.reference != item.gateway_ref
                ):
                    continue
                if equal_only and (item.currency, item.amount_minor) != (
                    row.currency,
                    row.amount_minor,
                ):
                    continue
                taken.add(i)
                paired_rows.add(r)
                pairs.append((row, item))
                break

    findings = Findings(gateway=gateway, date=day, timezone=timezone)
    for row, item in sorted(pairs, key=lambda pair: pair[0].line):
        if (row.currency, row.amount_minor) != (item.currency, item.amount_minor):
            findings.amount_mismatch.append(_finding(row, item))
        elif (
            row.kind == "payment" and row.fee_minor is not None and row.fee_minor != item.fee_minor
        ):
            findings.fee_mismatch.append(_finding(row, item))
        else:
            findings.matched.append(_finding(row, item))
    for r, row in enumerate(rows):
        if r not in paired_rows:
            findings.missing_in_ledger.append(_finding(row, None))
    for i, item in enumerate(items):
        if i not in taken:
            findings.missing_in_report.append(_finding(None, item))

    findings.summary.update(
        {name: len(getattr(findings, name)) for name in _LISTS},
        ok=findings.ok,
        report_rows=len(rows),
        ledger_messages=len(items),
        report_rows_total=total,
        report_rows_ignored=ignored,
        report_rows_other_days=other_days,
    )
    return findings


# -- showing -------------------------------------------------------------------

_TABLE_COLUMNS: Final = (
    ("type", "type"),
    ("order_id", "order id"),
    ("reference", "reference"),
    ("report_amount", "report amount"),
    ("ledger_amount", "ledger amount"),
    ("report_fee", "report fee"),
    ("ledger_fee", "ledger fee"),
    ("line", "line"),
    ("position", "position"),
)


def format_table(findings: Findings, *, show_matched: bool = False) -> str:
    """A plain-text summary and one row per finding (matched ones only if asked)."""
    summary = findings.summary
    head = (
        f"{findings.gateway} {findings.date.isoformat()} ({findings.timezone}): "
        f"{summary.get('matched', 0)} matched, "
        f"{summary.get('missing_in_ledger', 0)} missing in ledger, "
        f"{summary.get('missing_in_report', 0)} missing in report, "
        f"{summary.get('amount_mismatch', 0)} amount mismatch, "
        f"{summary.get('fee_mismatch', 0)} fee mismatch "
        f"({summary.get('report_rows', 0)} report rows, "
        f"{summary.get('ledger_messages', 0)} ledger messages that day; "
        f"{summary.get('report_rows_ignored', 0)} rows ignored, "
        f"{summary.get('report_rows_other_days', 0)} on other days)"
    )
    table: list[list[str]] = [["finding", *(title for _, title in _TABLE_COLUMNS)]]
    for name in _LISTS:
        if name == "matched" and not show_matched:
            continue
        for entry in getattr(findings, name):
            values = [entry.get(key) for key, _ in _TABLE_COLUMNS]
            table.append([name, *("-" if value is None else str(value) for value in values)])
    if len(table) == 1:
        return head + "\n"
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
    numeric = {4, 5, 6, 7, 8, 9}  # right-align amounts and numbers
    lines = [
        "  ".join(
            cell.rjust(widths[c]) if c in numeric else cell.ljust(widths[c])
            for c, cell in enumerate(row)
        ).rstrip()
        for row in table
    ]
    return head + "\n" + "\n".join(lines) + "\n"
