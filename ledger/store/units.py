"""What a command writes, as the append takes it: its events (``NewEvent``), the
running totals they move (``AccountDelta``), the index rows and claims they
take, all in one ``Unit``; and what became of each unit (``CommitOutcome``).

The service builds these (``ledger.app.ledger``); ``ledger.store.append``
writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from ledger.domain import balances
from ledger.store.keys import Claim

__all__ = ["AccountDelta", "CommitOutcome", "NewEvent", "Unit"]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One event to append, already mapped to its stored form by the service."""

    stream_id: UUID
    version: int
    topic: str
    state: bytes
    type: str
    data: dict[str, Any]
    occurred_at: str
    #: the state's top-level seller_id (orders, sellers, payouts), stored beside
    #: the event so that one seller's history is an index range (time travel)
    seller_id: str | None = None


@dataclass(slots=True)
class AccountDelta:
    seller_id: str
    currency: str
    pending_minor: int = 0
    captured_minor: int = 0
    refunded_minor: int = 0
    fees_minor: int = 0
    paid_out_minor: int = 0

    @property
    def available_minor(self) -> int:
        return balances.available_minor(self)

    def add(self, other: AccountDelta) -> None:
        balances.add_to(self, other)


@dataclass(slots=True)
class Unit:
    """What one command wants to write, all or nothing.

    ``base_versions`` are the versions each touched stream had when the unit
    was decided (0 for a new stream); ``payout`` asks the store to re-check
    under the lock that the seller's available balance covers the amount.
    """

    events: list[NewEvent]
    base_versions: dict[UUID, int]
    idempotency_key: str | None = None
    fingerprint: bytes = b""
    accounts: list[AccountDelta] = field(default_factory=list)
    payout: tuple[str, str, int] | None = None
    order_index: list[tuple[str, str, str]] = field(default_factory=list)
    payment_index: list[tuple[str, str, str, str]] = field(default_factory=list)
    channel_accounts: list[tuple[str, str, str]] = field(default_factory=list)
    suspense: dict[str, Any] | None = None
    suspense_resolved: UUID | None = None
    #: unique names of ``FACT_CLAIMS`` kinds this unit takes
    fact_claims: list[Claim] = field(default_factory=list)
    #: streams the decision read without writing (the seller of a new order):
    #: if one of them is dropped from the batch, this unit is dropped too
    reads: set[UUID] = field(default_factory=set)

    def claims(self) -> list[Claim]:
        """What this unit takes that nobody else may: its payments' gateway
        references, its seller's channel accounts."""
        return [
            *(("payment", g, ref) for g, ref, _, _ in self.payment_index),
            *(("account", channel, account) for channel, account, _ in self.channel_accounts),
            *self.fact_claims,
        ]


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    """Per unit: the positions of its events, or why it was dropped."""

    positions: list[list[int] | None]
    dropped: list[str | None]
    recorded_at: datetime
