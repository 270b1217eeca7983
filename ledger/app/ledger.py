"""The ledger's write side, as the rest of the code sees it: every fact enters here.

A small facade over the parts of ``ledger/app``: ``handlers`` (one handler per
command type), ``internal`` (the ledger's own facts), ``writer`` (group
commit, idempotency, retries) and ``repository`` (aggregates, cached and
replayed). It chooses each fact's idempotency key and hands the decision to
the writer.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import replace
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.domain import Aggregate

from ledger.app import handlers, internal
from ledger.app.answers import DB_ERRORS, Recorded
from ledger.app.repository import Repository
from ledger.app.writer import CLIENT_KEYS, Writer
from ledger.domain.commands import Command, NoteOrderStatus, OrderFact
from ledger.domain.errors import SellerExists, UnknownOrder
from ledger.store import LedgerStore
from ledger.store.keys import Claim

__all__ = ["DB_ERRORS", "Ledger", "Recorded"]


class Ledger:
    """The ledger's write side: every fact enters through here."""

    def __init__(self, store: LedgerStore, *, batch_size_max: int = 2000) -> None:
        self.store = store
        self._repository = Repository(store)
        self._writer = Writer(store, self._repository, batch_size_max=batch_size_max)
        self.stats = self._writer.stats

    @property
    def queue_depth(self) -> int:
        """Decisions waiting for the writer (a gauge on /metrics)."""
        return self._writer.queue_depth

    def start(self) -> None:
        self._writer.start()

    async def stop(self) -> None:
        await self._writer.stop()

    # -- public commands -------------------------------------------------------------
    async def record(self, command: Command) -> Recorded:
        """Records one canonical fact, or raises the rule it breaks."""
        return await self._writer.submit(
            functools.partial(handlers.decide, command=command),
            command.idempotency_key,
            command.fingerprint,
            hints=handlers.stream_hints(command),
            claims=handlers.claims_of(command),
        )

    async def record_many(self, commands: list[Command]) -> list[Recorded | BaseException]:
        """Records a batch of canonical facts: one answer (or the rule broken) per
        command, in order; decided in the writer as ``record`` decides each."""
        return await self._writer.submit_many(
            [
                (
                    functools.partial(handlers.decide, command=command),
                    command.idempotency_key,
                    command.fingerprint,
                    handlers.stream_hints(command),
                    handlers.claims_of(command),
                )
                for command in commands
            ]
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
        accounts: tuple[Claim, ...] = tuple(
            ("account", channel, account) for channel, account in channels.items()
        )
        decide = functools.partial(
            internal.register_seller,
            seller_id=seller_id,
            name=name,
            district=district,
            nib=nib,
            channels=channels,
            occurred_at=occurred_at,
            accounts=accounts,
        )
        return await self._writer.submit(
            decide,
            f"seller.registered:{seller_id}",
            fingerprint,
            duplicate_as=SellerExists,
            internal=True,
            claims=accounts,
        )

    async def curate_seller(
        self,
        *,
        seller_id: str,
        status: str,
        certifications: list[dict[str, Any]],
        occurred_at: str,
    ) -> Recorded:
        decide = functools.partial(
            internal.curate_seller,
            seller_id=seller_id,
            status=status,
            certifications=certifications,
            occurred_at=occurred_at,
        )
        return await self._writer.submit(decide, None, b"")

    async def record_suspense(
        self, command: Command, *, gateway: str, reason: str, raw: dict[str, Any]
    ) -> Recorded:
        """Keeps an authenticated gateway fact that could not be applied."""
        decide = functools.partial(
            internal.record_suspense, command=command, gateway=gateway, reason=reason, raw=raw
        )
        key = f"suspense:{command.idempotency_key}"
        return await self._writer.submit(decide, key, command.fingerprint, internal=True)

    async def resolve_suspense(
        self, entry_id: UUID, command: Command, *, occurred_at: str
    ) -> Recorded:
        """Applies a suspended fact to the order it names now, and closes the entry."""
        decide = functools.partial(
            internal.resolve_suspense, entry_id=entry_id, command=command, occurred_at=occurred_at
        )
        return await self._writer.submit(
            decide,
            command.idempotency_key,
            command.fingerprint,
            claims=handlers.claims_of(command),
        )

    async def close_suspense(
        self, entry_id: UUID, *, channel: str, order_id: str, occurred_at: str
    ) -> Recorded:
        """Closes an open entry whose fact is already applied to ``(channel, order_id)``.

        Applies nothing: used when the suspended fact reached its order by
        another path (a redelivery raced the entry's own commit), so that an
        open entry never stands for money the ledger already holds.
        """
        decide = functools.partial(
            internal.close_suspense,
            entry_id=entry_id,
            channel=channel,
            order_id=order_id,
            occurred_at=occurred_at,
        )
        return await self._writer.submit(decide, None, b"")

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
        decide = functools.partial(
            internal.record_reconciliation,
            check=check,
            report_sha256=report_sha256,
            gateway=gateway,
            date=date,
            summary=summary,
            findings=findings,
            occurred_at=occurred_at,
        )
        key = f"reconciliation:{gateway}:{date}:{check}"
        return await self._writer.submit(decide, key, fingerprint, internal=True)

    # -- lookups used by the gateways -------------------------------------------------
    async def recorded(self, keys: list[str]) -> dict[str, tuple[bytes, int, UUID, int]]:
        """The client (or gateway) idempotency keys among ``keys`` already recorded:
        ``{key: (fingerprint digest, position, stream_id, version)}``."""
        found = await self.store.lookup_keys([CLIENT_KEYS + key for key in keys])
        return {key[len(CLIENT_KEYS) :]: value for key, value in found.items()}

    async def resolve_order(self, command: Command) -> Command:
        """Fills in the channel (by order id alone) or the order (by the refunded payment)."""
        if not isinstance(command, OrderFact):
            return command  # an order placed names its channel; a payout no order
        if command.order_id is None and command.payment_ref is not None:
            source = command.source if isinstance(command, NoteOrderStatus) else None
            gateway = command.gateway or source
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

    async def read_stream(self, stream_id: UUID) -> tuple[Aggregate | None, list[dict[str, Any]]]:
        """A fresh replay from the database and the stream's messages, in one query:
        for readers, never the writer's cache, which may hold a decision whose
        transaction has not committed yet."""
        return await self._repository.read_stream(stream_id)
