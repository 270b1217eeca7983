"""Which domain event class is which contract type (``order.placed``, ...).

The log keeps the library's topic for each event; the contract speaks of
types. This table is the one place that maps one onto the other.
"""

from __future__ import annotations

from typing import Final

from eventsourcing.utils import get_topic

from ledger.domain.orders import Order
from ledger.domain.sellers import Seller
from ledger.domain.suspense import Reconciliation, SuspenseEntry

__all__ = ["TYPE_BY_TOPIC", "event_type"]

_TYPES: Final[dict[type, str]] = {
    Seller.Registered: "seller.registered",  # type: ignore[attr-defined]
    Seller.Curated: "seller.curated",  # type: ignore[attr-defined]
    Seller.PayoutSent: "payout.sent",  # type: ignore[attr-defined]
    Order.Placed: "order.placed",  # type: ignore[attr-defined]
    Order.PaymentCaptured: "payment.captured",  # type: ignore[attr-defined]
    Order.PaymentFailed: "payment.failed",  # type: ignore[attr-defined]
    Order.RefundIssued: "refund.issued",  # type: ignore[attr-defined]
    Order.Cancelled: "order.cancelled",  # type: ignore[attr-defined]
    Order.StatusNoted: "order.status_noted",  # type: ignore[attr-defined]
    SuspenseEntry.Recorded: "suspense.recorded",  # type: ignore[attr-defined]
    SuspenseEntry.Resolved: "suspense.resolved",  # type: ignore[attr-defined]
    Reconciliation.Recorded: "reconciliation.recorded",  # type: ignore[attr-defined]
}

TYPE_BY_TOPIC: Final[dict[str, str]] = {get_topic(cls): name for cls, name in _TYPES.items()}


def event_type(domain_event: object) -> str:
    return _TYPES[type(domain_event)]
