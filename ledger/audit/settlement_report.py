"""A gateway's settlement report (CSV) -> rows with amounts in minor units:
:func:`parse_report`. Pure: no SQL, no HTTP; the caller reads the file or the
request body. Matching the rows with the ledger is :mod:`ledger.audit.reconcile`.

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
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from ledger.domain.errors import ValidationError
from ledger.domain.money import parse_amount, parse_currency

__all__ = ["DEFAULT_COLUMNS", "ReportError", "ReportRow", "parse_report"]

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
            "Name the headers with --columns FIELD=HEADER (e.g. --columns order_id='Order Number')",
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
