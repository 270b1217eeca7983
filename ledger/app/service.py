"""The write path: load -> decide (domain) -> append, with group commit and idempotency.

``Ledger.submit`` hands one decision to a single writer task. While one
transaction is committing, new requests queue up; the writer then takes all
of them at once (up to ``batch_size_max``), decides each on the aggregates in
memory, and appends the whole batch in one transaction: one fsync and one
ordering lock for many requests (DESIGN rule 3).

Idempotency: a key already in the table answers ``duplicate`` (same body) or
``idempotency_conflict`` (different body); copies of one key that arrive
together share one decision. The key is stored in the same transaction as
its events (DESIGN rule 5), so a refused command burns nothing.

Aggregates are cached between batches. With several ``serve`` processes a
cached aggregate can be stale; the store then drops the unit under its lock
and the writer decides it again on fresh state (bounded retries).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final
from uuid import UUID

import asyncpg
import orjson
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic

from ledger.contract.messages import event_data
from ledger.domain import balances
from ledger.domain.catalog import TYPE_BY_TOPIC
from ledger.domain.commands import Command
from ledger.domain.errors import (
    ChannelAccountTaken,
    IdempotencyConflict,
    LedgerError,
    NotFound,
    OrderExists,
    PaymentExists,
    PayoutExists,
    RefundExists,
    SellerExists,
    SuspenseClosed,
    Unavailable,
    UnknownOrder,
    UnknownSeller,
    ValidationError,
)
from ledger.domain.orders import Order, order_stream_id
from ledger.domain.sellers import Seller, seller_stream_id
from ledger.domain.suspense import Reconciliation, SuspenseEntry, suspense_stream_id
from ledger.store import LedgerStore
from ledger.store.keys import Claim
from ledger.store.log import StoredRow
from ledger.store.units import AccountDelta, NewEvent, Unit

__all__ = ["Ledger", "Recorded"]

log = logging.getLogger("omniledger.ledger")

_ATTEMPTS_MAX: Final = 5
#: Namespaces of idempotency keys: a client's (and a gateway's), the ledger's own.
_CLIENT_KEYS: Final = "c:"
_INTERNAL_KEYS: Final = "i:"
#: Aggregates kept between batches. Orders are hot for minutes (placed, paid,
#: maybe refunded) then cold; a miss costs one batched read. Bounded so that a
#: long run keeps a flat memory profile (loadtests/soak.sh).
_CACHE_AGGREGATES_MAX: Final = 10_000

#: Failures of the database itself (not of a rule): answered 503, retried by clients.
DB_ERRORS: Final = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncio.TimeoutError,
)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The answer for one recorded (or already recorded) fact."""

    status: str  # "recorded" | "duplicate"
    position: int
    stream_id: UUID
    version: int
    idempotency_key: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "position": self.position,
            "stream_id": str(self.stream_id),
            "version": self.version,
            "idempotency_key": self.idempotency_key,
        }


Decision = Callable[["_Batch"], Awaitable[Unit]]


@dataclass(slots=True)
class _Pending:
    decide: Decision
    key: str | None
    fingerprint: bytes
    future: asyncio.Future[Recorded]
    shown_key: str | None = None
    hints: tuple[UUID, ...] = ()
    streams: tuple[UUID, ...] = ()
    attempts: int = 0
    duplicate_as: type[LedgerError] = IdempotencyConflict
    #: the stream versions its last decision saw (0: absent), for refusals
    seen: dict[UUID, int] = field(default_factory=dict)
    #: the unique names its decision will take, looked up with the batch's keys
    claims: tuple[Claim, ...] = ()


def _make_mapper() -> Mapper[UUID]:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DatetimeAsISO(), DecimalAsStr()):
        transcoder.register(transcoding)
    return Mapper(transcoder=transcoder)


class _Batch:
    """The aggregates one batch decides on: the cache plus what it created."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.touched: dict[UUID, Aggregate] = {}
        self.base_versions: dict[UUID, int] = {}
        self.accounts: dict[tuple[str, str], AccountDelta] = {}
        #: streams known not to exist when this batch started (prefetched)
        self.absent: set[UUID] = set()
        #: the versions the decision being made has seen, stream by stream
        self.seen: dict[UUID, int] = {}
        #: claims looked up for this batch, and those taken (before it, or by it)
        self.claims_known: set[Claim] = set()
        self.claims_taken: set[Claim] = set()

    async def get(self, stream_id: UUID) -> Aggregate | None:
        aggregate = self.touched.get(stream_id)
        if aggregate is None and stream_id not in self.absent:
            aggregate = await self._ledger._load(stream_id)
            if aggregate is None:
                self.absent.add(stream_id)
        self.seen.setdefault(stream_id, 0 if aggregate is None else aggregate.version)
        return aggregate

    async def is_taken(self, claim: Claim) -> bool:
        """Whether a recorded fact, or one decided earlier in this batch, holds ``claim``.

        Looked up with the batch's keys when its command named it; otherwise here.
        """
        if claim not in self.claims_known:
            self.claims_known.add(claim)
            ledger = self._ledger
            _, taken = await ledger.store.lookup((), [claim], ledger._conn)
            self.claims_taken |= taken
        return claim in self.claims_taken

    def take(self, claim: Claim) -> None:
        self.claims_taken.add(claim)

    def remember(self, aggregate: Aggregate, base_version: int) -> None:
        self.touched[aggregate.id] = aggregate
        self.base_versions.setdefault(aggregate.id, base_version)


class Ledger:
    """The ledger's write side: every fact enters through here."""

    def __init__(self, store: LedgerStore, *, batch_size_max: int = 2000) -> None:
        self.store = store
        self._mapper = _make_mapper()
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._retry: list[_Pending] = []
        self._in_flight: dict[str, _Pending] = {}
        self._cache: OrderedDict[UUID, Aggregate] = OrderedDict()
        self._batch_size_max = batch_size_max
        self._writer: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self.stats = {"batches": 0, "events": 0, "batch_size_max_seen": 0, "retries": 0}

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="ledger-writer")

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass
            self._writer = None
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await self.store.pool.release(conn)
            except Exception:  # a broken connection: the pool replaces it
                conn.terminate()

    # -- public commands -------------------------------------------------------------
    async def record(self, command: Command) -> Recorded:
        """Records one canonical fact, or raises the rule it breaks."""
        return await self._submit(
            lambda batch: self._decide_command(batch, command),
            command.idempotency_key,
            command.fingerprint,
            hints=_stream_hints(command),
            claims=_claims_of(command),
        )

    async def register_seller(
        self,
        *,
        seller_id: str,
        name: str,
        district: str | None,
        nib: str | None,
        channels: dict[str, str],
        occurred_at: str,
        fingerprint: bytes,
    ) -> Recorded:
        accounts = [("account", channel, account) for channel, account in channels.items()]

        async def decide(batch: _Batch) -> Unit:
            stream_id = seller_stream_id(seller_id)
            if await batch.get(stream_id) is not None:
                raise SellerExists(f"seller {seller_id} is already registered", field="seller_id")
            for claim in accounts:
                if await batch.is_taken(claim):
                    raise ChannelAccountTaken(
                        f"the {claim[1]} account {claim[2]} belongs to another seller",
                        field="channels",
                    )
            seller = Seller(
                seller_id=seller_id,
                name=name,
                district=district,
                nib=nib,
                channels=channels,
                occurred_at=occurred_at,
            )
            batch.remember(seller, 0)
            unit = self._unit(batch, [seller])
            unit.channel_accounts = [(ch, acct, seller_id) for ch, acct in channels.items()]
            for claim in accounts:
                batch.take(claim)
            return unit

        return await self._submit(
            decide,
            f"seller.registered:{seller_id}",
            fingerprint,
            duplicate_as=SellerExists,
            internal=True,
            claims=tuple(accounts),
        )

    async def curate_seller(
        self,
        *,
        seller_id: str,
        status: str,
        certifications: list[dict[str, Any]],
        occurred_at: str,
    ) -> Recorded:
        async def decide(batch: _Batch) -> Unit:
            seller = await self._require_seller(batch, seller_id)
            base = seller.version
            seller.curate(status=status, certifications=certifications, occurred_at=occurred_at)
            batch.remember(seller, base)
            return self._unit(batch, [seller])

        return await self._submit(decide, None, b"")

    async def record_suspense(
        self, command: Command, *, gateway: str, reason: str, raw: dict[str, Any]
    ) -> Recorded:
        """Keeps an authenticated gateway fact that could not be applied."""
        key = f"suspense:{command.idempotency_key}"

        async def decide(batch: _Batch) -> Unit:
            entry = SuspenseEntry(
                suspense_id=str(suspense_stream_id(command.idempotency_key)),
                idempotency_key=command.idempotency_key,
                gateway=gateway,
                reason=reason,
                event=raw,
                amount_minor=command.amount_minor or 0,
                currency=command.currency,
                occurred_at=command.occurred_at.isoformat(),
            )
            batch.remember(entry, 0)
            unit = self._unit(batch, [entry])
            unit.suspense = {
                "gateway": gateway,
                "reason": reason,
                "event": raw,
                "amount_minor": command.amount_minor or 0,
                "currency": command.currency,
            }
            return unit

        return await self._submit(decide, key, command.fingerprint, internal=True)

    async def resolve_suspense(
        self, entry_id: UUID, command: Command, *, occurred_at: str
    ) -> Recorded:
        """Applies a suspended fact to the order it names now, and closes the entry."""

        async def decide(batch: _Batch) -> Unit:
            entry = await batch.get(entry_id)
            if not isinstance(entry, SuspenseEntry):
                raise NotFound("no such suspense entry")
            entry_base = entry.version
            if entry.resolved:
                raise SuspenseClosed("this suspense entry is already resolved")
            applied = await self._decide_command(batch, command)
            assert command.order_id is not None and command.channel is not None
            entry.resolve(
                channel=command.channel, order_id=command.order_id, occurred_at=occurred_at
            )
            batch.remember(entry, entry_base)
            applied.events.extend(self._events([entry]))
            applied.base_versions[entry.id] = entry_base
            applied.suspense_resolved = entry.id
            return applied

        return await self._submit(
            decide, command.idempotency_key, command.fingerprint, claims=_claims_of(command)
        )

    async def close_suspense(
        self, entry_id: UUID, *, channel: str, order_id: str, occurred_at: str
    ) -> Recorded:
        """Closes an open entry whose fact is already applied to ``(channel, order_id)``.

        Applies nothing: used when the suspended fact reached its order by
        another path (a redelivery raced the entry's own commit), so that an
        open entry never stands for money the ledger already holds.
        """

        async def decide(batch: _Batch) -> Unit:
            entry = await batch.get(entry_id)
            if not isinstance(entry, SuspenseEntry):
                raise NotFound("no such suspense entry")
            base = entry.version
            entry.resolve(channel=channel, order_id=order_id, occurred_at=occurred_at)
            batch.remember(entry, base)
            unit = self._unit(batch, [entry])
            unit.suspense_resolved = entry.id
            return unit

        return await self._submit(decide, None, b"")

    async def record_reconciliation(
        self,
        *,
        report_sha256: str,
        gateway: str,
        date: str,
        summary: dict[str, Any],
        findings: dict[str, Any],
        occurred_at: str,
    ) -> Recorded:
        # The same report checked again finds the same things: recorded once.
        # Checked again after the ledger changed, it finds other things: that
        # is a new reconciliation, recorded beside the first.
        fingerprint = orjson.dumps(findings, option=orjson.OPT_SORT_KEYS)
        check = f"{report_sha256}:{hashlib.sha256(fingerprint).hexdigest()}"

        async def decide(batch: _Batch) -> Unit:
            stream_id = Reconciliation.create_id(check, gateway, date)
            existing = await batch.get(stream_id)
            if existing is not None:
                raise _AlreadyRecorded(stream_id)
            recon = Reconciliation(
                check=check,
                report_sha256=report_sha256,
                gateway=gateway,
                date=date,
                summary=summary,
                findings=findings,
                occurred_at=occurred_at,
            )
            batch.remember(recon, 0)
            return self._unit(batch, [recon])

        key = f"reconciliation:{gateway}:{date}:{check}"
        return await self._submit(decide, key, fingerprint, internal=True)

    # -- lookups used by the gateways -------------------------------------------------
    async def recorded(self, keys: list[str]) -> dict[str, tuple[bytes, int, UUID, int]]:
        """The client (or gateway) idempotency keys among ``keys`` already recorded:
        ``{key: (fingerprint digest, position, stream_id, version)}``."""
        found = await self.store.lookup_keys([_CLIENT_KEYS + key for key in keys])
        return {key[len(_CLIENT_KEYS) :]: value for key, value in found.items()}

    async def resolve_order(self, command: Command) -> Command:
        """Fills in the channel (by order id alone) or the order (by the refunded payment)."""
        if command.order_id is None and command.payment_ref is not None:
            gateway = command.gateway or command.source
            if gateway is None:
                raise UnknownOrder("a payment reference needs its gateway", field="payment_ref")
            found = await self.store.find_payment(gateway, command.payment_ref)
            if found is None:
                raise UnknownOrder("no captured payment with that reference", field="payment_ref")
            return replace(command, channel=found[0], order_id=found[1])
        if command.channel is None and command.order_id is not None:
            orders = await self.store.find_orders(command.order_id)
            if len(orders) != 1:
                raise UnknownOrder(
                    f"order {command.order_id} is "
                    + ("unknown" if not orders else "ambiguous across channels"),
                    field="order_id",
                )
            return replace(command, channel=orders[0][0])
        return command

    # -- deciding --------------------------------------------------------------------
    async def _require_seller(self, batch: _Batch, seller_id: str) -> Seller:
        seller = await batch.get(seller_stream_id(seller_id))
        if not isinstance(seller, Seller):
            raise UnknownSeller(f"seller {seller_id} is not registered", field="seller_id")
        return seller

    async def _require_order(self, batch: _Batch, command: Command) -> Order:
        if command.channel is None or command.order_id is None:
            raise ValidationError("channel and order_id are required", field="channel")
        order = await batch.get(order_stream_id(command.channel, command.order_id))
        scope = command.seller_scope
        if not isinstance(order, Order) or (scope is not None and order.seller_id != scope):
            raise UnknownOrder(
                f"no order {command.order_id} on channel {command.channel}", field="order_id"
            )
        return order

    async def _decide_command(self, batch: _Batch, c: Command) -> Unit:
        at = c.occurred_at.isoformat()
        if c.type == "order.placed":
            assert c.seller_id and c.order_id and c.channel and c.amount_minor is not None
            seller = await self._require_seller(batch, c.seller_id)
            stream_id = order_stream_id(c.channel, c.order_id)
            if await batch.get(stream_id) is not None:
                raise OrderExists(
                    f"order {c.order_id} on {c.channel} already exists", field="order_id"
                )
            order = Order(
                seller_id=seller.seller_id,
                order_id=c.order_id,
                channel=c.channel,
                amount_minor=c.amount_minor,
                currency=c.currency,
                occurred_at=at,
                idempotency_key=c.idempotency_key,
                metadata=c.metadata,
            )
            batch.remember(order, 0)
            unit = self._unit(batch, [order])
            unit.accounts = [
                self._delta(batch, seller.seller_id, c.currency, c.type, amount=c.amount_minor)
            ]
            unit.order_index = [(c.channel, c.order_id, seller.seller_id)]
            unit.reads = {seller.id}
            return unit

        if c.type == "payout.sent":
            assert c.seller_id and c.amount_minor is not None and c.reference
            seller = await self._require_seller(batch, c.seller_id)
            payout = _payout_claim(c.reference)
            if await batch.is_taken(payout):
                raise PayoutExists(f"payout {c.reference} is already recorded", field="reference")
            base = seller.version
            available = await self._available(batch, c.seller_id, c.currency)
            seller.pay_out(
                amount_minor=c.amount_minor,
                currency=c.currency,
                reference=c.reference,
                available_minor=available,
                occurred_at=at,
                idempotency_key=c.idempotency_key,
                metadata=c.metadata,
            )
            batch.remember(seller, base)
            unit = self._unit(batch, [seller])
            unit.accounts = [
                self._delta(batch, c.seller_id, c.currency, c.type, amount=c.amount_minor)
            ]
            unit.payout = (c.seller_id, c.currency, c.amount_minor)
            unit.fact_claims = [payout]
            batch.take(payout)
            return unit

        order = await self._require_order(batch, c)
        if c.shop_id is not None:
            await self._check_shop(batch, order, c.shop_id)
        base = order.version
        # the order's part in pending before this command (the money rule moves it)
        pending_before = balances.OrderPending(
            order.amount_minor, order.captured_minor, open=not order.cancelled
        )
        unit_accounts: list[AccountDelta] = []
        payment_index: list[tuple[str, str, str, str]] = []
        fact_claims: list[Claim] = []
        if c.type == "payment.captured":
            assert c.amount_minor is not None and c.gateway and c.gateway_ref
            payment: Claim = ("payment", c.gateway, c.gateway_ref)
            if await batch.is_taken(payment):
                raise PaymentExists(
                    f"{c.gateway} payment {c.gateway_ref} is already captured",
                    field="gateway_ref",
                )
            one_per_order = _order_claim(c.gateway, order.order_id)
            if one_per_order is not None:
                if await batch.is_taken(one_per_order):
                    raise PaymentExists(
                        f"{c.gateway} order {order.order_id} already has a captured payment"
                        f" ({c.gateway} allows one per order id)",
                        field="order_id",
                    )
                fact_claims.append(one_per_order)
            order.capture(
                amount_minor=c.amount_minor,
                fee_minor=c.fee_minor,
                currency=c.currency,
                gateway=c.gateway,
                gateway_ref=c.gateway_ref,
                payment_ref=c.payment_ref,
                occurred_at=at,
                idempotency_key=c.idempotency_key,
                metadata=c.metadata,
            )
            unit_accounts.append(
                self._delta(
                    batch,
                    order.seller_id,
                    order.currency,
                    c.type,
                    amount=c.amount_minor,
                    fee=c.fee_minor,
                    order=pending_before,
                )
            )
            payment_index.append((c.gateway, c.gateway_ref, order.channel, order.order_id))
            batch.take(payment)
        elif c.type == "refund.issued":
            assert c.amount_minor is not None and c.gateway and c.gateway_ref
            refund: Claim = ("refund", c.gateway, c.gateway_ref)
            if await batch.is_taken(refund):
                raise RefundExists(
                    f"{c.gateway} refund {c.gateway_ref} is already recorded", field="gateway_ref"
                )
            order.refund(
                amount_minor=c.amount_minor,
                currency=c.currency,
                gateway=c.gateway,
                gateway_ref=c.gateway_ref,
                payment_ref=c.payment_ref,
                occurred_at=at,
                idempotency_key=c.idempotency_key,
                metadata=c.metadata,
            )
            fact_claims.append(refund)
            unit_accounts.append(
                self._delta(batch, order.seller_id, order.currency, c.type, amount=c.amount_minor)
            )
        elif c.type == "payment.failed":
            assert c.gateway and c.gateway_ref
            if c.currency_stated:
                order.check_currency(c.currency)
            order.fail_payment(
                gateway=c.gateway,
                gateway_ref=c.gateway_ref,
                reason=c.reason,
                occurred_at=at,
                idempotency_key=c.idempotency_key,
                metadata=c.metadata,
            )
        elif c.type == "order.cancelled":
            if c.currency_stated:
                order.check_currency(c.currency)
            order.cancel(occurred_at=at, idempotency_key=c.idempotency_key, metadata=c.metadata)
            unit_accounts.append(
                self._delta(batch, order.seller_id, order.currency, c.type, order=pending_before)
            )
        elif c.type == "order.status_noted":
            assert c.status is not None
            order.note_status(
                source=c.source or "client",
                status=c.status,
                occurred_at=at,
                idempotency_key=c.idempotency_key,
                metadata=c.metadata,
            )
        else:  # pragma: no cover - parse_command admits no other type
            raise ValidationError(f"unsupported type {c.type}", field="type")
        batch.remember(order, base)
        unit = self._unit(batch, [order])
        unit.accounts = unit_accounts
        unit.payment_index = payment_index
        unit.fact_claims = fact_claims
        for claim in fact_claims:
            batch.take(claim)
        return unit

    async def _check_shop(self, batch: _Batch, order: Order, shop_id: str) -> None:
        seller = await batch.get(seller_stream_id(order.seller_id))
        if not isinstance(seller, Seller) or seller.channels.get(order.channel) != shop_id:
            raise UnknownOrder(
                f"order {order.order_id} does not belong to shop {shop_id}", field="shop_id"
            )

    async def _available(self, batch: _Batch, seller_id: str, currency: str) -> int:
        """Fresh from the database, plus what this batch already decided."""
        row = await self.store.account(seller_id, currency, self._conn)
        available = 0 if row is None else balances.available_minor(row)
        pending = batch.accounts.get((seller_id, currency))
        return available + (pending.available_minor if pending else 0)

    def _delta(
        self,
        batch: _Batch,
        seller_id: str,
        currency: str,
        event_type: str,
        *,
        amount: int = 0,
        fee: int = 0,
        order: balances.OrderPending | None = None,
    ) -> AccountDelta:
        """The account change of an event of ``event_type``: the money rule's."""
        change = balances.effect(event_type, amount_minor=amount, fee_minor=fee, order=order)
        delta = AccountDelta(seller_id, currency, **change.fields())
        batch.accounts.setdefault((seller_id, currency), AccountDelta(seller_id, currency)).add(
            delta
        )
        return delta

    def _events(self, aggregates: list[Aggregate]) -> list[NewEvent]:
        out: list[NewEvent] = []
        for aggregate in aggregates:
            for domain_event in aggregate.collect_events():
                state = dict(vars(domain_event))
                stream_id = state.pop("originator_id")
                version = state.pop("originator_version")
                topic = _topic_of(type(domain_event))
                out.append(
                    NewEvent(
                        stream_id=stream_id,
                        version=version,
                        topic=topic,
                        state=_encode_state(state),
                        type=TYPE_BY_TOPIC[topic],
                        data=event_data(state),
                        occurred_at=state["occurred_at"],
                        seller_id=state.get("seller_id"),
                    )
                )
        return out

    def _unit(self, batch: _Batch, aggregates: list[Aggregate]) -> Unit:
        events = self._events(aggregates)
        # The version each stream had before *this* unit: what the database
        # must still hold if the unit is committed on its own.
        base_versions = {a.id: a.version for a in aggregates}
        for ev in events:
            base_versions[ev.stream_id] = min(base_versions[ev.stream_id], ev.version - 1)
        return Unit(events=events, base_versions=base_versions)

    async def read_stream(self, stream_id: UUID) -> tuple[Aggregate | None, list[dict[str, Any]]]:
        """A fresh replay from the database and the stream's messages, in one query:
        for readers, never the writer's cache, which may hold a decision whose
        transaction has not committed yet."""
        rows = await self.store.stream_rows(stream_id)
        return self._replay([row for _, row in rows]), [message for message, _ in rows]

    # -- loading and caching -------------------------------------------------------------
    async def _load(self, stream_id: UUID) -> Aggregate | None:
        cached = self._cache.get(stream_id)
        if cached is not None:
            self._cache.move_to_end(stream_id)
            return cached
        streams = await self.store.load_streams([stream_id], self._conn)
        aggregate = self._replay(streams.get(stream_id, []))
        if aggregate is not None:
            self._cache_put(aggregate)
        return aggregate

    async def _prefetch(self, stream_ids: set[UUID], work: _Batch) -> None:
        """Loads every stream a batch will need in one query, not one per command."""
        missing = [s for s in stream_ids if s not in self._cache]
        if not missing:
            return
        streams = await self.store.load_streams(missing, self._conn)
        for stream_id in missing:
            aggregate = self._replay(streams.get(stream_id, []))
            if aggregate is None:
                work.absent.add(stream_id)
            else:
                self._cache_put(aggregate)

    def _replay(self, rows: list[StoredRow]) -> Aggregate | None:
        aggregate: Aggregate | None = None
        for row in rows:
            domain_event = self._mapper.to_domain_event(
                StoredEvent(
                    originator_id=row.stream_id,
                    originator_version=row.version,
                    topic=row.topic,
                    state=bytes(row.state),
                )
            )
            aggregate = domain_event.mutate(aggregate)  # type: ignore[attr-defined]
        return aggregate

    def _cache_put(self, aggregate: Aggregate) -> None:
        self._cache[aggregate.id] = aggregate
        self._cache.move_to_end(aggregate.id)
        while len(self._cache) > _CACHE_AGGREGATES_MAX:
            self._cache.popitem(last=False)

    def _evict(self, stream_ids: Any) -> None:
        for stream_id in stream_ids:
            self._cache.pop(stream_id, None)

    # -- the writer ----------------------------------------------------------------------
    async def _submit(
        self,
        decide: Decision,
        key: str | None,
        fingerprint: bytes,
        *,
        duplicate_as: type[LedgerError] = IdempotencyConflict,
        internal: bool = False,
        hints: tuple[UUID, ...] = (),
        claims: tuple[Claim, ...] = (),
    ) -> Recorded:
        # Clients may choose any key; the ledger's own keys live in another
        # namespace so that no client key can ever collide with them.
        shown_key = key
        if key is not None:
            key = (_INTERNAL_KEYS if internal else _CLIENT_KEYS) + key
        if self._writer is None or self._writer.done():
            raise Unavailable("the ledger writer is not running")
        loop = asyncio.get_running_loop()
        if key is not None and key in self._in_flight:
            first = self._in_flight[key]
            try:
                result = await asyncio.shield(first.future)
            except LedgerError:
                if first.fingerprint == fingerprint:
                    raise  # the same request: the same answer
                # The first body was refused and its key is still free: this
                # one is decided on its own, as if it had come second.
                return await self._submit(
                    decide, shown_key, fingerprint,
                    duplicate_as=duplicate_as, internal=internal, hints=hints, claims=claims,
                )  # fmt: skip
            if first.fingerprint != fingerprint:
                raise _conflict(duplicate_as, shown_key)
            return Recorded(
                "duplicate", result.position, result.stream_id, result.version, shown_key
            )
        pending = _Pending(
            decide,
            key,
            fingerprint,
            loop.create_future(),
            shown_key,
            hints=hints,
            duplicate_as=duplicate_as,
            claims=claims,
        )
        if key is not None:
            self._in_flight[key] = pending
            pending.future.add_done_callback(lambda _f, k=key: self._in_flight.pop(k, None))
        self._queue.put_nowait(pending)
        return await asyncio.shield(pending.future)

    async def _write_loop(self) -> None:
        while True:
            if self._retry:
                batch, self._retry = self._retry, []
            else:
                batch = [await self._queue.get()]
            while len(batch) < self._batch_size_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._process(batch)
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(Unavailable("the ledger is shutting down"))
                raise
            except Exception as e:  # the batch as a whole failed: nothing was written
                self._cache.clear()
                await self._drop_connection()
                error: LedgerError
                if isinstance(e, DB_ERRORS):
                    log.warning("append failed, database unavailable: %s", e)
                    error = Unavailable("the database is unavailable; retry later")
                else:
                    log.exception("append failed")
                    error = Unavailable("the append failed; retry later")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(error)

    async def _process(self, batch: list[_Pending]) -> None:
        self.stats["batches"] += 1
        self.stats["batch_size_max_seen"] = max(self.stats["batch_size_max_seen"], len(batch))
        keys = [p.key for p in batch if p.key is not None]
        if self._conn is None or self._conn.is_closed():
            # The writer's own connection: no pool hand-over and reset per statement.
            self._conn = await self.store.pool.acquire()
            # The writer's statements run thousands of times while the tables
            # grow from empty; a generic plan cached while they were tiny
            # (sequential scans) would stay forever. Plan each with its values.
            await self._conn.execute("SET plan_cache_mode = force_custom_plan")
        claims = {c for p in batch for c in p.claims}
        known, taken = (
            await self.store.lookup(keys, claims, self._conn) if keys or claims else ({}, set())
        )
        work = _Batch(self)
        work.claims_known, work.claims_taken = claims, taken
        await self._prefetch({h for p in batch for h in p.hints}, work)
        units: list[Unit] = []
        owners: list[_Pending] = []
        unit_index: list[int] = []
        refused: list[tuple[int, _Pending, LedgerError]] = []
        for index, p in enumerate(batch):
            if p.key is not None and p.key in known:
                self._answer_known(p, known[p.key])
                continue
            work.seen = p.seen = {}
            try:
                unit = await p.decide(work)
            except _AlreadyRecorded as already:
                history = await self.store.stream_history(already.stream_id)
                first = history[0]
                p.future.set_result(
                    Recorded("duplicate", first["position"], already.stream_id, 1, p.shown_key)
                )
                continue
            except LedgerError as e:
                refused.append((index, p, e))
                continue
            except DB_ERRORS:
                raise
            except Exception as e:  # a bug in deciding: refuse this one, keep the batch
                log.exception("deciding a command failed")
                self._evict(work.touched)
                p.future.set_exception(e)
                continue
            unit.idempotency_key = p.key
            unit.fingerprint = p.fingerprint
            p.streams = tuple(unit.base_versions)
            units.append(unit)
            owners.append(p)
            unit_index.append(index)
        retry: list[tuple[int, _Pending]] = []
        if units:
            try:
                outcome = await self.store.commit(units, self._conn)
                self._settle(owners, units, outcome, work, unit_index, retry)
            except asyncpg.PostgresError as e:
                self._evict(work.touched)
                if isinstance(e, DB_ERRORS):
                    raise
                # The database refused something in this batch (not a lost
                # connection): commit unit by unit so that one bad request
                # cannot fail the others. Later units decided on an earlier
                # one's state fail its version check and are decided again.
                log.warning("batch of %d refused (%s); committing one by one", len(units), e)
                for p, unit, index in zip(owners, units, unit_index, strict=True):
                    await self._commit_alone(p, unit, work, index, retry)
            except BaseException:
                self._evict(work.touched)
                raise
        await self._answer_refusals(refused, retry)
        retry.sort(key=lambda item: item[0])
        self._retry.extend(p for _, p in retry)

    def _answer_known(self, p: _Pending, known: tuple[bytes, int, UUID, int]) -> None:
        digest, position, stream_id, version = known
        if digest != hashlib.sha256(p.fingerprint).digest():
            p.future.set_exception(_conflict(p.duplicate_as, p.shown_key))
        else:
            p.future.set_result(Recorded("duplicate", position, stream_id, version, p.shown_key))

    async def _answer_refusals(
        self, refused: list[tuple[int, _Pending, LedgerError]], retry: list[tuple[int, _Pending]]
    ) -> None:
        """Answers the commands a rule refused, unless the refusal may be stale.

        A refusal decided after a decision that was then dropped may have
        rested on it (a payout refused for money an uncommitted payout took):
        it is decided again. And a refused copy of a fact another replica
        committed meanwhile is answered as the duplicate it is.
        """
        first_drop = min((index for index, _ in retry), default=None)
        final: list[tuple[int, _Pending, LedgerError]] = []
        for index, p, error in refused:
            if first_drop is not None and index > first_drop and p.attempts < _ATTEMPTS_MAX:
                p.attempts += 1
                retry.append((index, p))
            else:
                final.append((index, p, error))
        final = await self._recheck_refusals(final, retry)
        keys = [p.key for _, p, _ in final if p.key is not None]
        known = await self.store.lookup_keys(keys, self._conn) if keys else {}
        for _, p, error in final:
            if p.key is not None and p.key in known:
                self._answer_known(p, known[p.key])
            else:
                p.future.set_exception(error)

    async def _recheck_refusals(
        self,
        refused: list[tuple[int, _Pending, LedgerError]],
        retry: list[tuple[int, _Pending]],
    ) -> list[tuple[int, _Pending, LedgerError]]:
        """The refusals that stand; those decided on state the log has since
        moved past are decided again.

        A refusal is never checked under the head lock the way an accepted
        unit is (its base versions), so a cached aggregate that another
        replica has changed since (a capture there, then a refund here) would
        refuse a valid fact, and keep refusing it while cached. So, only when
        something was refused: if a stream it read now has more events than
        the decision saw, the cached copy is dropped and the command decided
        again on a fresh load (at most ``_ATTEMPTS_MAX`` times).
        """
        seen = {s for _, p, _ in refused for s in p.seen}
        if not seen:
            return refused
        current = await self.store.stream_versions(list(seen), self._conn)
        stale = {s for _, p, _ in refused for s, v in p.seen.items() if current.get(s, 0) != v}
        if not stale:
            return refused
        self._evict(stale)
        standing = []
        for index, p, error in refused:
            if stale.intersection(p.seen) and p.attempts < _ATTEMPTS_MAX:
                p.attempts += 1
                retry.append((index, p))
            else:
                standing.append((index, p, error))
        return standing

    async def _commit_alone(
        self,
        p: _Pending,
        unit: Unit,
        work: _Batch,
        index: int,
        retry: list[tuple[int, _Pending]],
    ) -> None:
        try:
            outcome = await self.store.commit([unit], self._conn)
        except asyncpg.PostgresError as e:
            if isinstance(e, DB_ERRORS):
                raise
            log.error("the database refused one unit: %s", e)
            self._evict(unit.base_versions)
            if isinstance(e, asyncpg.NumericValueOutOfRangeError):
                error = ValidationError("a running total would exceed 64 bits", field="amount")
            else:
                error = ValidationError("the database refused this event's content")
            p.future.set_exception(error)
            return
        self._settle([p], [unit], outcome, work, [index], retry)

    def _settle(
        self,
        owners: list[_Pending],
        units: list[Unit],
        outcome: Any,
        work: _Batch,
        unit_index: list[int],
        retry: list[tuple[int, _Pending]],
    ) -> None:
        for p, unit, positions, dropped, index in zip(
            owners, units, outcome.positions, outcome.dropped, unit_index, strict=True
        ):
            if dropped is not None or positions is None:
                self._evict(unit.base_versions)
                p.attempts += 1
                self.stats["retries"] += 1
                if p.attempts >= _ATTEMPTS_MAX:
                    p.future.set_exception(Unavailable("too much contention; retry later"))
                else:
                    retry.append((index, p))
                continue
            for stream_id in unit.base_versions:
                aggregate = work.touched.get(stream_id)
                if aggregate is not None:
                    self._cache_put(aggregate)
            first = unit.events[0]
            self.stats["events"] += len(unit.events)
            p.future.set_result(
                Recorded("recorded", positions[0], first.stream_id, first.version, p.shown_key)
            )


@functools.cache
def _topic_of(cls: type) -> str:
    return get_topic(cls)


def _encode_state(state: dict[str, Any]) -> bytes:
    """The library's stored state, byte for byte what its ``JSONTranscoder``
    writes for our events, at orjson's speed.

    Our events hold only JSON-native values besides the library's own
    ``timestamp``, which its ``DatetimeAsISO`` transcoding wraps as below.
    ``tests/unit/domain/test_stored_state.py`` holds the two encoders equal.
    """
    timestamp = state["timestamp"]
    encoded = dict(state, timestamp={"_type_": "datetime_iso", "_data_": timestamp.isoformat()})
    return orjson.dumps(encoded)


def _conflict(kind: type[LedgerError], shown_key: str | None) -> LedgerError:
    """The answer to a key already used with another body, in the words of its command."""
    if kind is SellerExists and shown_key is not None:
        seller_id = shown_key.partition(":")[2]  # the ledger's key "seller.registered:<id>"
        return SellerExists(
            f"seller {seller_id} is already registered (with other details)", field="seller_id"
        )
    return kind("this idempotency key was used with a different body", field="idempotency_key")


#: Gateways that allow one successful payment per merchant order id (Midtrans:
#: "Order ID should be unique for every transaction"), and sign that order id:
#: a capture of theirs is unique per order, whatever transaction id it claims.
_ONE_PAYMENT_PER_ORDER: Final = frozenset({"midtrans"})


def _order_claim(gateway: str, order_id: str) -> Claim | None:
    return ("gateway_order", gateway, order_id) if gateway in _ONE_PAYMENT_PER_ORDER else None


def _payout_claim(reference: str) -> Claim:
    return ("payout", "", reference)


def _claims_of(c: Command) -> tuple[Claim, ...]:
    """The unique names deciding this command will look up with the batch's keys."""
    if c.type == "payment.captured" and c.gateway and c.gateway_ref:
        order_claim = _order_claim(c.gateway, c.order_id) if c.order_id else None
        payment: Claim = ("payment", c.gateway, c.gateway_ref)
        return (payment,) if order_claim is None else (payment, order_claim)
    if c.type == "refund.issued" and c.gateway and c.gateway_ref:
        return (("refund", c.gateway, c.gateway_ref),)
    if c.type == "payout.sent" and c.reference:
        return (_payout_claim(c.reference),)
    return ()


def _stream_hints(c: Command) -> tuple[UUID, ...]:
    """The streams deciding this command will read, so a batch loads them at once."""
    hints: list[UUID] = []
    if c.seller_id is not None:
        hints.append(seller_stream_id(c.seller_id))
    if c.channel is not None and c.order_id is not None:
        hints.append(order_stream_id(c.channel, c.order_id))
    return tuple(hints)


class _AlreadyRecorded(Exception):
    def __init__(self, stream_id: UUID) -> None:
        super().__init__(str(stream_id))
        self.stream_id = stream_id
