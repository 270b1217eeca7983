"""Gateway settlement reports against the ledger: ``omniledger reconcile`` and
``POST /v1/reconciliations``.

:func:`reconcile` compares the rows of one local day of a report (read by
:func:`ledger.audit.settlement_report.parse_report`) with the ledger's
``payment.captured`` / ``refund.issued`` messages of that gateway and day, and
returns :class:`ledger.audit.findings.Findings`. Pure: no SQL, no HTTP; the
caller reads the report and the log.

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

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from ledger.audit.findings import FINDING_LISTS, Findings
from ledger.audit.settlement_report import ReportRow
from ledger.domain import balances
from ledger.domain.commands import parse_day
from ledger.domain.errors import ValidationError
from ledger.domain.money import format_minor, parse_amount, parse_currency

__all__ = ["reconcile"]

#: The ledger's event types a report's rows are matched with, and their kind.
_LEDGER_KINDS: Final = balances.GATEWAY_MONEY_TYPES


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

    rows, ignored, other_days, total = _rows_of_day(report_rows, zone, day)
    ignored_count = sum(ignored.values())
    items = [
        item
        for message in ledger_messages
        if (item := _ledger_item(message, gateway, zone, day)) is not None
    ]

    pairs, taken, paired_rows = _pair(rows, items)

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
        {name: len(getattr(findings, name)) for name in FINDING_LISTS},
        ok=findings.ok,
        report_rows=len(rows),
        ledger_messages=len(items),
        report_rows_total=total,
        report_rows_ignored=ignored_count,
        # why, by reason (the most frequent first): a row that is no payment or
        # refund, or one without a time, was left out, and the operator asks why
        report_rows_ignored_reasons=dict(ignored.most_common(_IGNORED_REASONS_MAX)),
        report_rows_other_days=other_days,
    )
    return findings


#: Distinct reasons for ignored rows kept in the summary (a report's types are few).
_IGNORED_REASONS_MAX: Final = 20


def _rows_of_day(
    report_rows: Iterable[ReportRow], zone: ZoneInfo, day: Date
) -> tuple[list[ReportRow], Counter[str], int, int]:
    """The payment and refund rows on local day ``day``; and the ignored rows
    counted by reason, the count of the rows on other days, and of all rows."""
    rows: list[ReportRow] = []
    ignored: Counter[str] = Counter()
    other_days = total = 0
    for row in report_rows:
        total += 1
        if row.kind is None or row.time is None:
            ignored[row.ignored or "no time"] += 1
        elif row.time.astimezone(zone).date() != day:
            other_days += 1
        else:
            rows.append(row)
    return rows, ignored, other_days, total


def _pair(
    rows: list[ReportRow], items: list[_LedgerItem]
) -> tuple[list[tuple[ReportRow, _LedgerItem]], set[int], set[int]]:
    """The pairs by the matching key (module docstring); the indexes of the
    ``items`` and of the ``rows`` that were paired."""
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
    return pairs, taken, paired_rows
