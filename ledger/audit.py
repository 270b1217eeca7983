"""What auditors run against the live log: verify, export, and balances replayed as of a time.

Everything here reads the log (``omniledger_events``) and nothing else: a
balance "as of" a time is folded from the events, never taken from a
projection, so it holds even if every read model is wrong. The pure parts
are ``BalanceFold`` (money events -> balances) and, in ``ledger.chain``, the
hash-chain check; the rest feeds them pages of the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TextIO

import orjson

from ledger.chain import ChainReport, verify_messages
from ledger.domain.catalog import TYPE_BY_TOPIC
from ledger.domain.money import format_minor, parse_amount
from ledger.messages import GENESIS_HASH
from ledger.store import EventStore

__all__ = [
    "BalanceFold",
    "export_beancount",
    "export_jsonl",
    "replay_balances",
    "sync_log",
    "verify_live",
]

_PAGE_EVENTS: Final = 5000


@dataclass(slots=True)
class _Account:
    pending: int = 0
    captured: int = 0
    refunded: int = 0
    fees: int = 0
    paid_out: int = 0
    position: int = 0


@dataclass(slots=True)
class _OrderState:
    amount: int
    captured: int = 0
    cancelled: bool = False


@dataclass
class BalanceFold:
    """Folds log messages into seller balances (pure; the same rules as the write side)."""

    accounts: dict[tuple[str, str], _Account] = field(default_factory=dict)
    orders: dict[tuple[str, str], _OrderState] = field(default_factory=dict)

    def apply(self, message: dict[str, Any]) -> None:
        kind, data = message["type"], message["data"]
        seller = data.get("seller_id")
        if seller is None or kind not in _MONEY_TYPES:
            return
        currency = data.get("currency", "IDR")
        account = self.accounts.setdefault((seller, currency), _Account())
        account.position = max(account.position, message["position"])
        key = (data.get("channel", ""), data.get("order_id", ""))
        if kind == "order.placed":
            amount = parse_amount(data["amount"], currency)
            self.orders[key] = _OrderState(amount)
            account.pending += amount
        elif kind == "payment.captured":
            amount = parse_amount(data["amount"], currency)
            fee = parse_amount(data.get("fee", "0"), currency, allow_zero=True)
            account.captured += amount
            account.fees += fee
            order = self.orders.get(key)
            if order is not None and not order.cancelled:
                account.pending -= min(amount, max(order.amount - order.captured, 0))
                order.captured += amount
        elif kind == "refund.issued":
            account.refunded += parse_amount(data["amount"], currency)
        elif kind == "order.cancelled":
            order = self.orders.get(key)
            if order is not None and not order.cancelled:
                account.pending -= max(order.amount - order.captured, 0)
                order.cancelled = True
        elif kind == "payout.sent":
            account.paid_out += parse_amount(data["amount"], currency)

    def balance(self, seller_id: str, currency: str = "IDR") -> dict[str, Any]:
        a = self.accounts.get((seller_id, currency), _Account())
        available = a.captured - a.refunded - a.fees - a.paid_out
        return {
            "seller_id": seller_id,
            "currency": currency,
            "pending": format_minor(a.pending, currency),
            "available": format_minor(available, currency),
            "captured_total": format_minor(a.captured, currency),
            "refunded_total": format_minor(a.refunded, currency),
            "fees_total": format_minor(a.fees, currency),
            "paid_out_total": format_minor(a.paid_out, currency),
            "as_of_position": a.position,
        }


_MONEY_TYPES: Final = frozenset(
    {"order.placed", "payment.captured", "refund.issued", "order.cancelled", "payout.sent"}
)


async def replay_balances(
    store: EventStore,
    *,
    as_of: datetime,
    known_at: datetime | None = None,
    seller_id: str | None = None,
) -> BalanceFold:
    """Balances from the log alone: events that happened by ``as_of`` (``occurred_at``)
    and, with ``known_at``, that the ledger had recorded by then (``recorded_at``)."""
    fold = BalanceFold()
    after = 0
    while True:
        # recorded_at is filtered in SQL (the column is part of the hash);
        # occurred_at is taken from the event's own state, which is too.
        page = await store.read_log(after, _PAGE_EVENTS, recorded_until=known_at)
        for message in page:
            if seller_id is not None and message["data"].get("seller_id") != seller_id:
                continue
            if datetime.fromisoformat(message["occurred_at"]) <= as_of:
                fold.apply(message)
        if len(page) < _PAGE_EVENTS:
            return fold
        after = page[-1]["position"]


def sync_log(
    store: EventStore,
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


@dataclass(frozen=True, slots=True)
class _RangeReport:
    after: int
    until: int
    ok: bool
    checked: int
    first_bad_position: int | None
    reason: str | None
    first_prev_hash: str | None
    last_hash: str | None


async def _verify_range(
    store: EventStore, after: int, until: int, on_checked: Callable[[int], None] | None = None
) -> _RangeReport:
    """Verifies positions ``(after, until]`` page by page, trusting only the
    ``prev_hash`` of the first row; the caller stitches ranges together."""
    expected, running, first_prev = after + 1, None, None
    checked = 0
    pending = asyncio.ensure_future(store.read_log_rows(after, _PAGE_EVENTS, until=until))
    while True:
        rows = await pending
        if len(rows) == _PAGE_EVENTS:
            pending = asyncio.ensure_future(
                store.read_log_rows(rows[-1][0]["position"], _PAGE_EVENTS, until=until)
            )
        messages = []
        for message, topic, occurred_at_column, origin in rows:
            problem = _unhashed_problem(message, topic, occurred_at_column, origin)
            if problem is not None:
                # Mark it as a change to the event's bytes at this position.
                message = dict(message, type=f"{message['type']} ({problem})")
            messages.append(message)
        if messages and running is None:
            running = first_prev = str(messages[0].get("prev_hash"))
        if messages:
            report = verify_messages(messages, start_prev_hash=running, start_position=expected)
            checked += report.checked
            if not report.ok:
                return _RangeReport(
                    after, until, False, checked, report.first_bad_position, report.reason,
                    first_prev, report.last_hash,
                )  # fmt: skip
            running = report.last_hash
            expected = messages[-1]["position"] + 1
            if on_checked is not None:
                on_checked(report.checked)
        if len(rows) < _PAGE_EVENTS:
            if expected != until + 1:
                return _RangeReport(
                    after, until, False, checked, expected,
                    f"position {expected} is missing", first_prev, running,
                )  # fmt: skip
            return _RangeReport(after, until, True, checked, None, None, first_prev, running)


def _range_worker(dsn: str, index: int, after: int, until: int, counter: Any, results: Any) -> None:
    """A worker process's share of ``verify_live``: its own event loop and connections."""

    async def main() -> _RangeReport:
        import asyncpg

        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:

            def count(n: int) -> None:
                with counter.get_lock():
                    counter.value += n

            return await _verify_range(EventStore(pool), after, until, count)
        finally:
            await pool.close()

    try:
        report = asyncio.run(main())
    except Exception as e:  # reported to the parent, which fails the verification
        results.put((index, repr(e)))
    else:
        results.put((index, report))


async def _verify_in_processes(
    dsn: str, bounds: list[int], progress: Callable[[int], None]
) -> list[_RangeReport]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    counter = context.Value("q", 0)
    results = context.Queue()
    processes = [
        context.Process(
            target=_range_worker,
            args=(dsn, i, bounds[i], bounds[i + 1], counter, results),
            daemon=True,
        )
        for i in range(len(bounds) - 1)
    ]
    for process in processes:
        process.start()
    collected: dict[int, Any] = {}
    reported = 0
    try:
        while len(collected) < len(processes):
            await asyncio.sleep(0.2)
            while not results.empty():
                index, outcome = results.get()
                collected[index] = outcome
            if counter.value > reported:
                progress(counter.value - reported)
                reported = counter.value
            if len(collected) < len(processes) and not any(p.is_alive() for p in processes):
                while not results.empty():
                    index, outcome = results.get()
                    collected[index] = outcome
                break
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
    reports = []
    for i in range(len(processes)):
        outcome = collected.get(i, "the worker process died")
        if isinstance(outcome, str):
            raise RuntimeError(
                f"verification of positions {bounds[i] + 1}-{bounds[i + 1]}: {outcome}"
            )
        reports.append(outcome)
    return reports


async def verify_live(
    store: EventStore,
    *,
    on_progress: Callable[[int, int], None] | None = None,
    dsn: str | None = None,
    workers: int = 1,
) -> ChainReport:
    """Recomputes the hash chain of the whole live log.

    Beyond the chain it checks what the chain cannot see: that each row's
    library topic still names the type it claims, that the ``occurred_at``
    column agrees with the hashed event, and that the head row agrees with
    the last event. With ``workers`` > 1 (and a ``dsn``) the log is cut into
    that many ranges verified by as many processes; each range's first
    ``prev_hash`` must then equal the previous range's last hash.
    """
    head_position, head_hash = await store.head()
    if head_position == 0:
        return ChainReport(True, 0, None, None, GENESIS_HASH)
    workers = max(1, min(workers, head_position // 20_000 or 1))
    # This process verifies the first range while the others start (a new
    # interpreter takes ~0.7 s to import what it needs), so it takes a larger share.
    first_share = 0.6 if workers == 2 else 1 / workers
    bounds = [0, int(head_position * first_share)]
    bounds += [
        bounds[1] + (head_position - bounds[1]) * i // (workers - 1) for i in range(1, workers)
    ]
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, done)

    if workers == 1 or dsn is None:
        reports = [await _verify_range(store, 0, head_position, progress)]
    else:
        others = asyncio.ensure_future(_verify_in_processes(dsn, bounds[1:], progress))
        try:
            first = await _verify_range(store, bounds[0], bounds[1], progress)
        finally:
            rest = await others
        reports = [first, *rest]
    return _stitch(reports, head_hash)


def _stitch(reports: list[_RangeReport], head_hash: str) -> ChainReport:
    checked, last_hash = 0, GENESIS_HASH
    for report in reports:
        if report.first_prev_hash is not None and report.first_prev_hash != last_hash:
            return ChainReport(
                False, checked, report.after + 1,
                "prev_hash does not match the hash of the event before it", last_hash,
            )  # fmt: skip
        if not report.ok:
            return ChainReport(
                False, checked + report.checked, report.first_bad_position, report.reason,
                report.last_hash or last_hash,
            )  # fmt: skip
        checked += report.checked
        last_hash = report.last_hash or last_hash
    if last_hash != head_hash:
        return ChainReport(
            False, checked, reports[-1].until + 1,
            "the log ends before the head: events were cut off the end", last_hash,
        )  # fmt: skip
    return ChainReport(True, checked, None, None, last_hash)


def _unhashed_problem(
    message: dict[str, Any], topic: str, occurred_at_column: datetime, origin: str | None
) -> str | None:
    """What the library or our queries read from a row besides the hashed fields."""
    if TYPE_BY_TOPIC.get(topic) != message["type"]:
        return f"topic {topic}"
    # The library builds the aggregate class from originator_topic (created events).
    if origin is not None and origin != topic.rsplit(".", 1)[0]:
        return f"originator_topic {origin}"
    try:
        hashed = datetime.fromisoformat(message["occurred_at"])
    except (TypeError, ValueError):
        return "occurred_at unreadable"
    if occurred_at_column != hashed:
        return "occurred_at column differs from the event"
    return None


async def export_jsonl(
    store: EventStore, out: TextIO, *, after: int = 0, until: int | None = None
) -> int:
    """Writes the log as JSON Lines (the ``GET /v1/events`` shape); returns the count."""
    count = 0
    async for message in store.iter_log(after=after, until=until):
        out.write(orjson.dumps(message).decode())
        out.write("\n")
        count += 1
    return count


async def export_beancount(
    store: EventStore, out: TextIO, *, timezone: str, after: int = 0, until: int | None = None
) -> None:
    from ledger.beancount import write_beancount

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(
        write_beancount, sync_log(store, loop, after=after, until=until), out, timezone=timezone
    )


async def reconcile_report(
    store: EventStore,
    ledger: Any,
    *,
    gateway: str,
    day: str,
    report: bytes,
    timezone: str,
    columns: dict[str, str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Compares a settlement report with the ledger's money events of one local day,
    then records what it found as a ``reconciliation.recorded`` event.

    A malformed report raises ``ReportError`` (422) before anything is recorded.
    """
    import hashlib
    from datetime import date as date_type
    from datetime import time, timedelta
    from zoneinfo import ZoneInfo

    from ledger.domain.errors import ValidationError
    from ledger.reconcile import parse_report, reconcile

    try:
        local_day = date_type.fromisoformat(day)
    except ValueError:
        raise ValidationError("date must be YYYY-MM-DD", field="date") from None
    rows = parse_report(report, gateway=gateway, columns=columns)
    zone = ZoneInfo(timezone)
    start = datetime.combine(local_day, time.min, zone)
    # a day of margin either side: the pure reconcile() picks the local day itself
    messages = await store.money_events_between(
        start - timedelta(days=1), start + timedelta(days=2)
    )
    findings = reconcile(rows, messages, gateway=gateway, date=local_day, timezone=timezone)
    result = findings.as_dict()
    recorded = await ledger.record_reconciliation(
        report_sha256=hashlib.sha256(report).hexdigest(),
        gateway=gateway,
        date=local_day.isoformat(),
        summary=result["summary"],
        findings=result["findings"],
        occurred_at=datetime.now(zone).isoformat(),
    )
    return findings, result | {"recorded": recorded.as_dict()}
