"""``omniledger verify`` on the live log: every stored row re-hashed, ranges in parallel.

What it checks (DESIGN rule 6, CONTRACT section 7): for each row in position
order, that positions have no gap, that ``prev_hash`` is the hash of the row
before, and that ``hash`` equals ``SHA-256(prev_hash || canonical)`` recomputed
from what is *stored* - the state bytes decoded and mapped to the contract's
message exactly as every reader of the log maps them (``contract.messages.event_data``,
``hashed_message``).
A change to any byte a reader uses therefore breaks the hash at that row.
Besides the hash it checks the columns the hash does not cover but readers
rely on: the library ``topic`` must name the event's type, the state's
``originator_topic`` (what the library builds the aggregate from) must agree
with it, and the ``occurred_at`` column (what reconciliation selects a day
by) must equal the hashed ``occurred_at``. Finally the ``ledger_head`` row
must end on the last row's hash, so a cut-off or re-sealed tail is seen.
The *first* bad position is named; everything after a break is unverifiable.

How it is fast enough (issue 5 asks at least 50,000 events/s): the per-row
work is one tight loop over positional records (``_RangeCheck``), and the log
is cut into ranges verified concurrently, one per process. The helper
processes are forked before the event loop starts (``RangeHelpers.fork``), so
they cost no second interpreter start-up; each reads and re-hashes its range
over its own connection and reports the range's first ``prev_hash`` and last
hash, and the ranges are stitched in order (``_stitch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Final

import orjson

from ledger.audit.chain import ChainReport
from ledger.contract.messages import (
    GENESIS_HASH,
    event_data,
    format_instant,
    hash_fields,
    hashed_message,
)
from ledger.domain.catalog import TYPE_BY_TOPIC
from ledger.store import LedgerStore

if TYPE_CHECKING:
    import asyncpg

__all__ = ["RANGE_EVENTS_MIN", "RangeHelpers", "verify_live"]

#: Rows per query. Each range prefetches its next page while hashing this one.
_PAGE_EVENTS: Final = 5000

#: Below this many events per range, splitting costs more than it saves.
RANGE_EVENTS_MIN: Final = 20_000

#: Each event topic's aggregate class: ``...orders:Order.Placed`` -> ``...orders:Order``.
_ORIGINATOR_BY_TOPIC: Final = {topic: topic.rsplit(".", 1)[0] for topic in TYPE_BY_TOPIC}


@dataclass(frozen=True, slots=True)
class RangeReport:
    """The verification of positions ``(after, until]``, trusting only the first
    row's ``prev_hash`` (``first_prev_hash``), which the caller checks against
    the range before."""

    after: int
    until: int
    ok: bool
    checked: int
    first_bad_position: int | None
    reason: str | None
    first_prev_hash: str | None
    last_hash: str | None


class _RangeCheck:
    """The per-row check over one range, fed a page of stored rows at a time (pure)."""

    def __init__(self, after: int) -> None:
        self.expected = after + 1
        self.running: str | None = None  # the first row's prev_hash is taken on trust
        self.first_prev_hash: str | None = None
        self.checked = 0
        self.bad_position: int | None = None
        self.reason: str | None = None

    def feed(self, rows: Sequence[Sequence[Any]] | Sequence[asyncpg.Record]) -> bool:
        """Checks ``rows`` (``LedgerStore.read_stored_rows`` records); False at the first break."""
        loads = orjson.loads
        running, expected = self.running, self.expected
        if running is None and rows:
            running = self.first_prev_hash = rows[0][9]
        for (
            position, stream_id, version, kind, topic,
            state_bytes, occurred_column, recorded_at, stored_hash, prev,
        ) in rows:  # fmt: skip
            problem = None
            if position != expected:
                position, problem = expected, f"position {expected} is missing"
            elif prev != running:
                problem = "prev_hash does not link to the previous hash"
            else:
                try:
                    state = loads(state_bytes)
                    occurred_at = state["occurred_at"]
                    hashed = hashed_message(
                        position, stream_id, version, kind, event_data(state),
                        occurred_at, format_instant(recorded_at),
                    )  # fmt: skip
                    assert running is not None  # set from the first row above
                    recomputed = hash_fields(running, hashed)
                except Exception as e:  # any undecodable or foreign state is a changed row
                    problem = f"the stored state is not an event ({e!r})"
                else:
                    if recomputed != stored_hash:
                        problem = "hash does not match the stored content"
                    else:
                        problem = _unhashed_problem(state, kind, topic, occurred_column)
            if problem is not None:
                self.bad_position, self.reason = position, problem
                break
            running = recomputed
            expected += 1
        self.checked += expected - self.expected
        self.running, self.expected = running, expected
        return self.bad_position is None

    def report(self, after: int, until: int) -> RangeReport:
        if self.bad_position is None and self.expected != until + 1:
            self.bad_position = self.expected
            self.reason = f"position {self.expected} is missing"
        ok = self.bad_position is None
        return RangeReport(
            after, until, ok, self.checked, self.bad_position, self.reason,
            self.first_prev_hash, self.running,
        )  # fmt: skip


def _unhashed_problem(
    state: dict[str, Any], kind: str, topic: str, occurred_column: datetime
) -> str | None:
    """What the hash does not cover but readers of the row rely on."""
    if TYPE_BY_TOPIC.get(topic) != kind:
        return f"topic column {topic!r} is not a {kind}"
    origin = state.get("originator_topic")  # what the library builds the aggregate from
    if origin is not None and origin != _ORIGINATOR_BY_TOPIC[topic]:
        return f"originator_topic {origin!r} is not the topic's"
    try:
        if datetime.fromisoformat(state["occurred_at"]) == occurred_column:
            return None
    except (TypeError, ValueError):
        pass
    return "occurred_at column differs from the event"


async def verify_range(
    store: LedgerStore, after: int, until: int, on_checked: Callable[[int], None] | None = None
) -> RangeReport:
    """Verifies positions ``(after, until]`` page by page, fetching the next page
    while the current one is hashed."""
    check = _RangeCheck(after)
    pending = asyncio.ensure_future(store.read_stored_rows(after, _PAGE_EVENTS, until=until))
    try:
        while True:
            rows = await pending
            full = len(rows) == _PAGE_EVENTS
            if full:
                pending = asyncio.ensure_future(
                    store.read_stored_rows(rows[-1][0], _PAGE_EVENTS, until=until)
                )
            before = check.checked
            if not check.feed(rows) or not full:
                return check.report(after, until)
            if on_checked is not None:
                on_checked(check.checked - before)
    finally:
        if not pending.done():
            pending.cancel()


async def verify_live(
    store: LedgerStore,
    *,
    helpers: RangeHelpers | None = None,
    range_events_min: int = RANGE_EVENTS_MIN,
    on_progress: Callable[[int], None] | None = None,
) -> ChainReport:
    """Recomputes the hash chain of the whole live log and checks the head.

    With ``helpers``, the log is cut into up to ``1 + helpers.count`` ranges of
    at least ``range_events_min`` events; this process verifies the first.
    ``on_progress(checked_so_far)`` is called as pages are done.
    """
    head_position, head_hash = await store.head()
    if head_position == 0:
        if helpers is not None:
            helpers.dismiss()
        return ChainReport(True, 0, None, None, GENESIS_HASH)
    ranges = 1 + (helpers.count if helpers is not None else 0)
    ranges = max(1, min(ranges, head_position // max(range_events_min, 1)))
    bounds = [head_position * i // ranges for i in range(ranges + 1)]
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done)

    if helpers is None or ranges == 1:
        if helpers is not None:
            helpers.dismiss()
        reports = [await verify_range(store, 0, head_position, progress)]
    else:
        others = asyncio.ensure_future(helpers.run(list(itertools.pairwise(bounds[1:])), progress))
        try:
            first = await verify_range(store, bounds[0], bounds[1], progress)
        finally:
            rest = await others
        reports = [first, *rest]
    return _stitch(reports, head_hash)


def _stitch(reports: list[RangeReport], head_hash: str) -> ChainReport:
    """The ranges in order: each must start on the hash the one before ended on."""
    checked, last_hash = 0, GENESIS_HASH
    for report in reports:
        if report.first_prev_hash is not None and report.first_prev_hash != last_hash:
            return ChainReport(
                False, checked, report.after + 1,
                f"prev_hash at {report.after + 1} does not link to the previous hash", last_hash,
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


# -- helper processes ------------------------------------------------------------------------


class RangeHelpers:
    """Processes that each verify one range of the log over their own connection.

    Forked (:meth:`fork`) while the caller is still single-threaded and has no
    event loop: a fork then copies an interpreter with everything imported,
    which a spawned process would spend most of a second re-importing. Each
    helper waits for its range on a pipe, verifies it, sends back its
    ``RangeReport`` and exits; progress is counted in shared memory.
    """

    def __init__(self, workers: list[tuple[Any, Connection]], counters: Any) -> None:
        self._workers = workers
        self._counters = counters

    @classmethod
    def fork(cls, dsn: str, count: int) -> RangeHelpers | None:
        """``count`` helpers, or None where processes cannot be forked (Windows)."""
        if count < 1 or "fork" not in multiprocessing.get_all_start_methods():
            return None
        context = multiprocessing.get_context("fork")
        counters = context.RawArray("q", count)  # one slot per helper: a single writer each
        workers = []
        for slot in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_helper, args=(theirs, dsn, counters, slot), daemon=True
            )
            process.start()
            theirs.close()
            workers.append((process, ours))
        return cls(workers, counters)

    @property
    def count(self) -> int:
        return len(self._workers)

    def dismiss(self) -> None:
        """Sends the helpers home without work (a short log)."""
        for process, pipe in self._workers:
            with contextlib.suppress(OSError):  # a helper that already died
                pipe.send(None)
            process.join(timeout=5)
            if process.is_alive():
                process.kill()

    async def run(
        self, ranges: list[tuple[int, int]], on_checked: Callable[[int], None]
    ) -> list[RangeReport]:
        """Hands out ``ranges`` (one per helper, at most ``count``), then waits for
        every report, passing progress on; the unused helpers are dismissed."""
        busy, idle = self._workers[: len(ranges)], self._workers[len(ranges) :]
        for (_, pipe), bounds in zip(busy, ranges, strict=True):
            pipe.send(bounds)
        RangeHelpers(idle, self._counters).dismiss()
        outcomes: dict[int, Any] = {}
        reported = 0
        try:
            while len(outcomes) < len(busy):
                await asyncio.sleep(0.01)
                for i, (process, pipe) in enumerate(busy):
                    if i in outcomes:
                        continue
                    if pipe.poll():
                        outcomes[i] = pipe.recv()
                    elif not process.is_alive():
                        outcomes[i] = (
                            pipe.recv() if pipe.poll() else f"exited with code {process.exitcode}"
                        )
                counted = sum(self._counters)
                if counted > reported:
                    on_checked(counted - reported)
                    reported = counted
        finally:
            for process, _ in busy:
                process.join(timeout=5)
                if process.is_alive():
                    process.kill()
        reports = []
        for i, (after, until) in enumerate(ranges):
            outcome = outcomes.get(i)
            if not isinstance(outcome, RangeReport):
                raise RuntimeError(f"verifying positions {after + 1}-{until}: the helper {outcome}")
            reports.append(outcome)
        return reports


def _helper(pipe: Connection, dsn: str, counters: Any, slot: int) -> None:
    """A helper process's life: one range, or nothing, then exit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        job = pipe.recv()
    except EOFError:  # the parent is gone
        return
    if job is None:
        return
    after, until = job

    async def main() -> RangeReport:
        import asyncpg

        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:

            def count(n: int) -> None:
                counters[slot] += n

            return await verify_range(LedgerStore(pool), after, until, count)
        finally:
            await pool.close()

    try:
        outcome: Any = _run_loop(main())
    except Exception as e:  # told to the parent, which fails the verification with it
        outcome = f"failed: {type(e).__name__}: {e}"
    pipe.send(outcome)


def _run_loop(coroutine: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)
