"""Suspense: authenticated gateway money that could not be applied to an order.

A fact about money that really moved is never dropped (DESIGN rule 8). It is
recorded here with its reason, credited to no seller, and resolved later onto
an order, which leaves an audit trail of who applied it where.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.domain.errors import SuspenseClosed

__all__ = ["Reconciliation", "SuspenseEntry", "suspense_stream_id"]

_NAMESPACE = uuid5(NAMESPACE_URL, "https://omni-ledger.example/suspense")
_RECONCILIATIONS = uuid5(NAMESPACE_URL, "https://omni-ledger.example/reconciliations")


def suspense_stream_id(idempotency_key: str) -> UUID:
    return uuid5(_NAMESPACE, idempotency_key)


class SuspenseEntry(Aggregate):
    @staticmethod
    def create_id(idempotency_key: str, **_: Any) -> UUID:
        return suspense_stream_id(idempotency_key)

    @event("Recorded")
    def __init__(
        self,
        *,
        suspense_id: str,
        idempotency_key: str,
        gateway: str,
        reason: str,
        event: dict[str, Any],
        amount_minor: int,
        currency: str,
        occurred_at: str,
    ) -> None:
        self.idempotency_key = idempotency_key
        self.gateway = gateway
        self.reason = reason
        self.event = event
        self.amount_minor = amount_minor
        self.currency = currency
        self.resolved = False

    def resolve(self, *, channel: str, order_id: str, occurred_at: str) -> None:
        if self.resolved:
            raise SuspenseClosed("this suspense entry is already resolved")
        self._resolved(
            suspense_id=str(self.id), channel=channel, order_id=order_id, occurred_at=occurred_at
        )

    @event("Resolved")
    def _resolved(self, *, suspense_id: str, channel: str, order_id: str, occurred_at: str) -> None:
        self.resolved = True


class Reconciliation(Aggregate):
    """One checked settlement report and what it found."""

    @staticmethod
    def create_id(check: str, gateway: str, date: str, **_: Any) -> UUID:
        """One stream per (report, what it found): ``check`` holds both digests."""
        return uuid5(_RECONCILIATIONS, f"{gateway}\x1f{date}\x1f{check}")

    @event("Recorded")
    def __init__(
        self,
        *,
        check: str,
        report_sha256: str,
        gateway: str,
        date: str,
        summary: dict[str, Any],
        findings: dict[str, Any],
        occurred_at: str,
    ) -> None:
        self.gateway = gateway
        self.date = date
        self.summary = summary
