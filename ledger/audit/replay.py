"""What auditors run against the live log: export, and balances replayed as of a time.

Everything here reads the log (``omniledger_events``) and nothing else: a
balance "as of" a time is folded from the events, never taken from a
projection, so it holds even if every read model is wrong. The pure part
is ``BalanceFold`` (money events -> balances); the rest feeds it pages of
the log. Verifying the hash chain is ``ledger.audit.verify`` (live log) and
``ledger.audit.chain`` (an export).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TextIO

import orjson

from ledger.domain import balances
from ledger.domain.money import parse_amount
from ledger.store import LedgerStore

__all__ = [
    "BalanceFold",
    "export_beancount",
    "export_jsonl",
    "replay_balances",
    "sync_log",
]

_PAGE_EVENTS: Final = 5000


@dataclass(slots=True)
class _Account(balances.Totals):
    position: int = 0


@dataclass
class BalanceFold:
    """Folds log messages into seller balances (pure; the money rule of
    ``ledger.domain.balances``, the same as the write side's)."""

    accounts: dict[tuple[str, str], _Account] = field(default_factory=dict)
    orders: dict[tuple[str, str], balances.OrderPending] = field(default_factory=dict)
    #: events read from the log to build this fold (what a replay cost)
    events_read: int = 0

    def apply(self, message: dict[str, Any]) -> None:
        kind, data = message["type"], message["data"]
        seller = data.get("seller_id")
        if seller is None or kind not in balances.MONEY_TYPES:
            return
        currency = data.get("currency", "IDR")
        account = self.accounts.setdefault((seller, currency), _Account())
        account.position = max(account.position, message["position"])
        key = (data.get("channel", ""), data.get("order_id", ""))
        amount = 0 if kind == balances.CANCELLED else parse_amount(data["amount"], currency)
        order = self.orders.get(key)
        if kind == balances.PLACED:
            order = self.orders[key] = balances.OrderPending(amount)
        elif kind == balances.CAPTURED:
            fee = parse_amount(data.get("fee", "0"), currency, allow_zero=True)
            account.add(balances.effect(kind, amount_minor=amount, fee_minor=fee, order=order))
            return
        account.add(balances.effect(kind, amount_minor=amount, order=order))

    def balance(self, seller_id: str, currency: str = "IDR") -> dict[str, Any]:
        a = self.accounts.get((seller_id, currency), _Account())
        return balances.balance_json(seller_id, currency, a, a.position)


_MONEY_TYPES_LIST: Final = sorted(balances.MONEY_TYPES)
#: one seller's replay runs inside the API process: smaller pages hand the
#: event loop back to the writers more often while the events are folded
_SELLER_PAGE_EVENTS: Final = 1000


async def replay_balances(
    store: LedgerStore,
    *,
    as_of: datetime,
    known_at: datetime | None = None,
    seller_id: str | None = None,
) -> BalanceFold:
    """Balances from the log alone: events that happened by ``as_of`` (``occurred_at``)
    and, with ``known_at``, that the ledger had recorded by then (``recorded_at``).

    For one seller only that seller's money events are read (an index range),
    so the cost follows the seller's history, not the log's length.
    """
    fold = BalanceFold()
    after = 0
    while True:
        # recorded_at is filtered in SQL (the column is part of the hash);
        # occurred_at is taken from the event's own state, which is too.
        if seller_id is None:
            page = await store.read_log(after, _PAGE_EVENTS, recorded_until=known_at)
        else:
            # The seller_id column only finds the rows; the fold keys accounts
            # by the (hashed) state's seller, so a mislabelled row counts nowhere.
            page = await store.read_seller_log(
                seller_id, after, _SELLER_PAGE_EVENTS, types=_MONEY_TYPES_LIST,
                recorded_until=known_at,
            )  # fmt: skip
        fold.events_read += len(page)
        for message in page:
            if seller_id is not None and message["data"].get("seller_id") != seller_id:
                continue
            if datetime.fromisoformat(message["occurred_at"]) <= as_of:
                fold.apply(message)
        if len(page) < (_PAGE_EVENTS if seller_id is None else _SELLER_PAGE_EVENTS):
            return fold
        after = page[-1]["position"]


def sync_log(
    store: LedgerStore,
    loop: asyncio.AbstractEventLoop,
    *,
    after: int = 0,
    until: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The log as a plain iterator, for pure consumers running in a worker thread.

    Pages are fetched on the event loop one at a time, so memory stays
    constant however long the log is.
    """
    while True:
        page = asyncio.run_coroutine_threadsafe(store.read_log(after, _PAGE_EVENTS), loop).result()
        for message in page:
            if until is not None and message["position"] > until:
                return
            yield message
        if len(page) < _PAGE_EVENTS:
            return
        after = page[-1]["position"]


async def export_jsonl(
    store: LedgerStore, out: TextIO, *, after: int = 0, until: int | None = None
) -> int:
    """Writes the log as JSON Lines (the ``GET /v1/events`` shape); returns the count."""
    count = 0
    async for message in store.iter_log(after=after, until=until):
        out.write(orjson.dumps(message).decode())
        out.write("\n")
        count += 1
    return count


async def export_beancount(
    store: LedgerStore, out: TextIO, *, timezone: str, after: int = 0, until: int | None = None
) -> None:
    from ledger.audit.beancount import write_beancount

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(
        write_beancount,
        sync_log(store, loop, after=after, until=until),
        out,
        timezone=timezone,
        # a window after position N lacks the balances before it: asserting
        # its running sums would assert false balances that bean-check accepts
        assert_balances=after == 0,
    )


async def reconcile_report(
    store: LedgerStore,
    ledger: Any,
    *,
    gateway: str,
    day: str,
    report: bytes,
    timezone: str,
    columns: dict[str, str] | None = None,
    dry_run: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Compares a settlement report with the ledger's money events of one local day,
    then records what it found as a ``reconciliation.recorded`` event (not on a
    ``dry_run``: a trial of a report's columns leaves no trace in the log).

    A malformed report raises ``ReportError`` (422) before anything is recorded.
    """
    import hashlib
    from datetime import time, timedelta
    from zoneinfo import ZoneInfo

    from ledger.audit.reconcile import reconcile
    from ledger.audit.settlement_report import parse_report
    from ledger.domain.commands import parse_day

    local_day = parse_day(day)
    rows = parse_report(report, gateway=gateway, columns=columns)
    zone = ZoneInfo(timezone)
    start = datetime.combine(local_day, time.min, zone)
    # a day of margin either side: the pure reconcile() picks the local day itself
    messages = await store.money_events_between(
        start - timedelta(days=1), start + timedelta(days=2)
    )
    findings = reconcile(rows, messages, gateway=gateway, date=local_day, timezone=timezone)
    result = findings.as_dict()
    if dry_run:
        return findings, result | {"recorded": None, "dry_run": True}
    recorded = await ledger.record_reconciliation(
        report_sha256=hashlib.sha256(report).hexdigest(),
        gateway=gateway,
        date=local_day.isoformat(),
        summary=result["summary"],
        findings=recorded_findings(result["findings"]),
        occurred_at=datetime.now(zone).isoformat(),
    )
    return findings, result | {"recorded": recorded.as_dict()}


#: Differences of one kind kept in the recorded event; the rest are counted.
RECORDED_FINDINGS_MAX: Final = 200


def recorded_findings(findings: dict[str, list[Any]]) -> dict[str, Any]:
    """What the ``reconciliation.recorded`` event keeps of a check's findings.

    The event must stay small: every event is published whole on the stream
    (NATS refuses a message over 1 MiB, and the relay would stall on it), and a
    report of a few thousand rows made events of megabytes. So matched rows are
    only counted (the summary has them; the report's SHA-256 names the report),
    and each kind of difference keeps its first ``RECORDED_FINDINGS_MAX`` items
    with the count of the ones left out. The answer to the caller is complete.
    """
    kept: dict[str, Any] = {}
    for name, items in findings.items():
        if name == "matched":
            continue
        kept[name] = items[:RECORDED_FINDINGS_MAX]
        if len(items) > RECORDED_FINDINGS_MAX:
            kept[f"{name}_left_out"] = len(items) - RECORDED_FINDINGS_MAX
    return kept
