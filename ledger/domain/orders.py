"""The Order aggregate: one sale on one channel, identified by ``(channel, order_id)``.

Rules are checked in the public methods; the ``@event`` methods only change
state, so replaying the log never re-runs a rule. Every event repeats the
order's identity (seller, channel, order id) so that the log is readable on
its own by projections and auditors.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from ledger.domain.balances import unpaid_minor
from ledger.domain.errors import (
    CurrencyMismatch,
    OrderClosed,
    Overpayment,
    RefundExceedsCaptured,
    RuleViolation,
)
from ledger.domain.money import format_minor

__all__ = ["ORDER_STATUSES", "Order", "OrderPaid", "order_status", "order_stream_id"]

#: What ``GET /v1/orders/...`` and the dasbor say an order is.
ORDER_STATUSES = ("open", "partially_paid", "paid", "refunded", "cancelled")

_NAMESPACE = uuid5(NAMESPACE_URL, "https://omni-ledger.example/orders")


class OrderPaid(RuleViolation):
    """A paid order cannot be cancelled: refund it first."""

    code = "order_paid"


@lru_cache(maxsize=65536)
def order_stream_id(channel: str, order_id: str) -> UUID:
    return uuid5(_NAMESPACE, f"{channel}\x1f{order_id}")


def order_status(
    amount_minor: int, captured_minor: int, refunded_minor: int, *, cancelled: bool
) -> str:
    """One of ``ORDER_STATUSES``: the order as its facts leave it (refunded: all
    that was captured went back)."""
    if cancelled:
        return "cancelled"
    if captured_minor and captured_minor == refunded_minor:
        return "refunded"
    if captured_minor >= amount_minor:
        return "paid"
    return "partially_paid" if captured_minor else "open"


class Order(Aggregate):
    @staticmethod
    def create_id(channel: str, order_id: str, **_: Any) -> UUID:
        return order_stream_id(channel, order_id)

    @event("Placed")
    def __init__(
        self,
        *,
        seller_id: str,
        order_id: str,
        channel: str,
        amount_minor: int,
        currency: str,
        occurred_at: str,
        idempotency_key: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.seller_id = seller_id
        self.order_id = order_id
        self.channel = channel
        self.amount_minor = amount_minor
        self.currency = currency
        self.captured_minor = 0
        self.refunded_minor = 0
        self.fees_minor = 0
        self.cancelled = False
        #: each captured payment's gateway by its reference, and what it captured
        #: and what refunds naming it (``payment_ref``) have returned of it
        self.payment_refs: dict[str, str] = {}
        self.captured_by_payment: dict[str, int] = {}
        self.refunded_by_payment: dict[str, int] = {}
        self.status_history: list[tuple[str, str]] = []

    # -- derived state -----------------------------------------------------
    @property
    def net_captured_minor(self) -> int:
        return self.captured_minor - self.refunded_minor

    @property
    def unpaid_minor(self) -> int:
        """What the buyer still owes while the order is open."""
        return unpaid_minor(self.amount_minor, self.captured_minor, open=not self.cancelled)

    def check_currency(self, currency: str) -> None:
        """Refuses a fact in another currency than the order's."""
        if currency != self.currency:
            raise CurrencyMismatch(
                f"order {self.order_id} is in {self.currency}, not {currency}",
                field="currency",
            )

    # -- commands ----------------------------------------------------------
    def capture(
        self,
        *,
        amount_minor: int,
        fee_minor: int,
        currency: str,
        gateway: str,
        gateway_ref: str,
        occurred_at: str,
        idempotency_key: str,
        payment_ref: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Money received; ``payment_ref`` names the gateway payment this capture
        is a part of (a payment captured in parts), when it is not itself."""
        if self.cancelled:
            raise OrderClosed(f"order {self.order_id} is cancelled")
        self.check_currency(currency)
        if self.captured_minor + amount_minor > self.amount_minor:
            raise Overpayment(
                f"captures would total more than the order amount of {self.order_id}",
                field="amount",
                excess=format_minor(
                    self.captured_minor + amount_minor - self.amount_minor, self.currency
                ),
            )
        self._captured(
            seller_id=self.seller_id,
            order_id=self.order_id,
            channel=self.channel,
            amount_minor=amount_minor,
            fee_minor=fee_minor,
            currency=currency,
            gateway=gateway,
            gateway_ref=gateway_ref,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            metadata=metadata,
            payment_ref=payment_ref,
        )

    @event("PaymentCaptured")
    def _captured(
        self,
        *,
        seller_id: str,
        order_id: str,
        channel: str,
        amount_minor: int,
        fee_minor: int,
        currency: str,
        gateway: str,
        gateway_ref: str,
        occurred_at: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None,
        # defaulted, after metadata: captures recorded before it replay without it
        payment_ref: str | None = None,
    ) -> None:
        self.captured_minor += amount_minor
        self.fees_minor += fee_minor
        self.payment_refs[gateway_ref] = gateway
        payment = payment_ref or gateway_ref
        self.payment_refs[payment] = gateway
        self.captured_by_payment[payment] = self.captured_by_payment.get(payment, 0) + amount_minor

    def fail_payment(
        self,
        *,
        gateway: str,
        gateway_ref: str,
        reason: str | None,
        occurred_at: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._payment_failed(
            seller_id=self.seller_id,
            order_id=self.order_id,
            channel=self.channel,
            gateway=gateway,
            gateway_ref=gateway_ref,
            reason=reason,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )

    @event("PaymentFailed")
    def _payment_failed(
        self,
        *,
        seller_id: str,
        order_id: str,
        channel: str,
        gateway: str,
        gateway_ref: str,
        reason: str | None,
        occurred_at: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None,
    ) -> None:
        """No balance effect: the failure is kept in the order's history."""

    def refund(
        self,
        *,
        amount_minor: int,
        currency: str,
        gateway: str,
        gateway_ref: str,
        occurred_at: str,
        idempotency_key: str,
        payment_ref: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Returns money to the buyer: at most what the order captured, and when
        the refund names its payment (``payment_ref``), at most what that
        payment of the same gateway captured (less what was refunded of it)."""
        self.check_currency(currency)
        if self.refunded_minor + amount_minor > self.captured_minor:
            raise RefundExceedsCaptured(
                f"refunds would total more than was captured for {self.order_id}",
                field="amount",
            )
        if payment_ref is not None:
            if self.payment_refs.get(payment_ref) != gateway:
                raise RefundExceedsCaptured(
                    f"{gateway} payment {payment_ref} captured nothing on order {self.order_id}",
                    field="payment_ref",
                )
            left = self.captured_by_payment[payment_ref] - self.refunded_by_payment.get(
                payment_ref, 0
            )
            if amount_minor > left:
                raise RefundExceedsCaptured(
                    f"refunds would total more than payment {payment_ref} captured",
                    field="amount",
                )
        self._refunded(
            seller_id=self.seller_id,
            order_id=self.order_id,
            channel=self.channel,
            amount_minor=amount_minor,
            currency=currency,
            gateway=gateway,
            gateway_ref=gateway_ref,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            metadata=metadata,
            payment_ref=payment_ref,
        )

    @event("RefundIssued")
    def _refunded(
        self,
        *,
        seller_id: str,
        order_id: str,
        channel: str,
        amount_minor: int,
        currency: str,
        gateway: str,
        gateway_ref: str,
        occurred_at: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None,
        # after metadata and defaulted: refunds recorded before it existed
        # replay without it (the library passes only the stored fields)
        payment_ref: str | None = None,
    ) -> None:
        self.refunded_minor += amount_minor
        if payment_ref is not None:
            self.refunded_by_payment[payment_ref] = (
                self.refunded_by_payment.get(payment_ref, 0) + amount_minor
            )

    def cancel(
        self, *, occurred_at: str, idempotency_key: str, metadata: dict[str, Any] | None = None
    ) -> None:
        if self.cancelled:
            raise OrderClosed(f"order {self.order_id} is already cancelled")
        if self.net_captured_minor > 0:
            raise OrderPaid(f"order {self.order_id} is paid: refund it before cancelling")
        self._cancelled(
            seller_id=self.seller_id,
            order_id=self.order_id,
            channel=self.channel,
            amount_minor=self.unpaid_minor,
            currency=self.currency,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )

    @event("Cancelled")
    def _cancelled(
        self,
        *,
        seller_id: str,
        order_id: str,
        channel: str,
        amount_minor: int,
        currency: str,
        occurred_at: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None,
    ) -> None:
        self.cancelled = True

    def note_status(
        self,
        *,
        source: str,
        status: str,
        occurred_at: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._status_noted(
            seller_id=self.seller_id,
            order_id=self.order_id,
            channel=self.channel,
            source=source,
            status=status,
            occurred_at=occurred_at,
            idempotency_key=idempotency_key,
            metadata=metadata,
        )

    @event("StatusNoted")
    def _status_noted(
        self,
        *,
        seller_id: str,
        order_id: str,
        channel: str,
        source: str,
        status: str,
        occurred_at: str,
        idempotency_key: str,
        metadata: dict[str, Any] | None,
    ) -> None:
        self.status_history.append((occurred_at, f"{source}:{status}"))
