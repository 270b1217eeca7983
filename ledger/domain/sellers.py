"""The Seller aggregate: registration, curation by the incubator, and payouts.

The payout rule needs the seller's available balance, which is the sum of
money events on many orders. The service reads it (fresh, under the commit
lock) and passes it in: the rule itself stays here, free of I/O.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.domain.errors import InsufficientBalance, ValidationError

__all__ = [
    "CERTIFICATION_KINDS",
    "CURATION_STATUSES",
    "Seller",
    "seller_stream_id",
]

_NAMESPACE = uuid5(NAMESPACE_URL, "https://omni-ledger.example/sellers")
CURATION_STATUSES = frozenset({"verified", "rejected", "pending"})
CERTIFICATION_KINDS = frozenset({"nib", "pirt", "halal", "sni", "hki"})


@lru_cache(maxsize=65536)
def seller_stream_id(seller_id: str) -> UUID:
    return uuid5(_NAMESPACE, seller_id)


class Seller(Aggregate):
    @staticmethod
    def create_id(seller_id: str, **_: Any) -> UUID:
        return seller_stream_id(seller_id)

    @event("Registered")
    def __init__(
        self,
        *,
        seller_id: str,
        name: str,
        district: str | None,
        nib: str | None,
        channels: dict[str, str],
        occurred_at: str,
    ) -> None:
        self.seller_id = seller_id
        self.name = name
        self.district = district
        self.nib = nib
        self.channels = dict(channels)
        self.curation_status = "pending"
        self.certifications: list[dict[str, Any]] = []

    def curate(
        self, *, status: str, certifications: list[dict[str, Any]], occurred_at: str
    ) -> None:
        if status not in CURATION_STATUSES:
            raise ValidationError(
                f"status must be one of {', '.join(sorted(CURATION_STATUSES))}", field="status"
            )
        self._curated(
            seller_id=self.seller_id,
            status=status,
            certifications=certifications,
            occurred_at=occurred_at,
        )

    @event("Curated")
    def _curated(
        self, *, seller_id: str, status: str, certifications: list[dict[str, Any]], occurred_at: str
    ) -> None:
        self.curation_status = status
        self.certifications = list(certifications)

    def pay_out(
        self,
        *,
        amount_minor: int,
        currency: str,
        reference: str,
        available_minor: int,
        occurred_at: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if amount_minor > available_minor:
            raise InsufficientBalance(
                f"seller {self.seller_id} has less available than the payout",
                field="amount",
            )
        self._paid_out(
            seller_id=self.seller_id,
            amount_minor=amount_minor,
            currency=currency,
            reference=reference,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )

    @event("PayoutSent")
    def _paid_out(
        self,
        *,
        seller_id: str,
        amount_minor: int,
        currency: str,
        reference: str,
        occurred_at: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None,
    ) -> None:
        """The balance lives in the seller's account row; nothing to keep here."""
