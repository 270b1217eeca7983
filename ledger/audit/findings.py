"""What one reconciliation found (:class:`Findings`) and its plain-text table
(:func:`format_table`). Each report row and ledger message of the day lands in
exactly one list; the lists hold JSON-ready dicts, built by
:mod:`ledger.audit.reconcile`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date as Date
from typing import Any, Final

__all__ = ["FINDING_LISTS", "Findings", "format_table"]


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
            "findings": {name: list(getattr(self, name)) for name in FINDING_LISTS},
        }


FINDING_LISTS: Final = ("missing_in_ledger", "missing_in_report", "amount_mismatch",
                         "fee_mismatch", "matched")  # fmt: skip


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
    for name in FINDING_LISTS:
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
