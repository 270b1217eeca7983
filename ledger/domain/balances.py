"""What money means to a seller, written once (CONTRACT section 4; ADR 0007).

Every part that counts a seller's money uses this module: the write side
(its running account rows and a payout's limit, in the batch and under the
head lock), the balances projection, the auditors' replay (``as_of`` /
``known_at``), the beancount export, the reconciliation matcher and the API's
balance answer. Per seller and currency there are five running totals:

- ``pending``: the unpaid value of the seller's open orders. ``order.placed``
  adds the order amount; a capture takes off what it pays, at most what is
  still unpaid; ``order.cancelled`` takes off the remainder and closes it.
- ``captured``, ``refunded``, ``fees``, ``paid_out``: sums of the amounts of
  ``payment.captured`` (and its fee), ``refund.issued`` and ``payout.sent``.

and one derived figure, ``available`` (what may be paid out): the sum of the
totals times their sign in :data:`AVAILABLE_SIGNS`. SQL that must compute it
takes the expression from :func:`available_sql`, built from the same signs.

Pure: stdlib only, no I/O. Amounts are integer minor units.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ledger.domain.money import format_minor

__all__ = [
    "AVAILABLE_SIGNS",
    "CANCELLED",
    "CAPTURED",
    "GATEWAY_MONEY_TYPES",
    "MONEY_TYPES",
    "PAID_OUT",
    "PLACED",
    "REFUNDED",
    "TOTAL_FIELDS",
    "HasTotals",
    "OrderPending",
    "Totals",
    "add_to",
    "available_minor",
    "available_sql",
    "balance_json",
    "effect",
    "unpaid_minor",
]

PLACED: Final = "order.placed"
CAPTURED: Final = "payment.captured"
REFUNDED: Final = "refund.issued"
CANCELLED: Final = "order.cancelled"
PAID_OUT: Final = "payout.sent"

#: The event types that move a seller's money; every other type (failed
#: payments, status notes, sellers, suspense, reconciliations) changes no total.
#: Suspense entries are never credited to a seller (DESIGN rule 8).
MONEY_TYPES: Final = frozenset({PLACED, CAPTURED, REFUNDED, CANCELLED, PAID_OUT})

#: The money types whose money passed through a gateway, and what a gateway's
#: settlement report calls them: what reconciliation matches report rows with.
GATEWAY_MONEY_TYPES: Final[Mapping[str, str]] = {CAPTURED: "payment", REFUNDED: "refund"}

#: The running totals, as the ``*_minor`` names of the account rows.
TOTAL_FIELDS: Final = (
    "pending_minor",
    "captured_minor",
    "refunded_minor",
    "fees_minor",
    "paid_out_minor",
)

#: ``available = captured - refunded - fees - paid_out``: what is owed to the
#: seller and may be paid out. Pending money is not the seller's yet, and the
#: fee of a capture stays withheld when the payment is refunded.
AVAILABLE_SIGNS: Final[Mapping[str, int]] = {
    "captured_minor": 1,
    "refunded_minor": -1,
    "fees_minor": -1,
    "paid_out_minor": -1,
}


class HasTotals(Protocol):
    """Anything holding the five totals (an account row, a delta, a fold's account)."""

    pending_minor: int
    captured_minor: int
    refunded_minor: int
    fees_minor: int
    paid_out_minor: int


def available_minor(totals: HasTotals | Mapping[str, int]) -> int:
    """``available`` of totals held as attributes or as a row's ``*_minor`` keys."""
    if isinstance(totals, Mapping):
        return sum(sign * int(totals[name]) for name, sign in AVAILABLE_SIGNS.items())
    return sum(sign * int(getattr(totals, name)) for name, sign in AVAILABLE_SIGNS.items())


def available_sql(table: str = "") -> str:
    """The SQL expression of ``available`` over the ``*_minor`` columns of ``table``.

    Built from :data:`AVAILABLE_SIGNS`, so a statement computing a total in
    the database follows the same rule as the Python side.
    """
    prefix = f"{table}." if table else ""
    terms = " ".join(
        f"{'+' if sign > 0 else '-'} {prefix}{name}" for name, sign in AVAILABLE_SIGNS.items()
    )
    return terms.removeprefix("+ ")


def add_to(into: HasTotals, other: HasTotals) -> None:
    """Adds ``other``'s totals to ``into``'s (a change to a running account)."""
    into.pending_minor += other.pending_minor
    into.captured_minor += other.captured_minor
    into.refunded_minor += other.refunded_minor
    into.fees_minor += other.fees_minor
    into.paid_out_minor += other.paid_out_minor


@dataclass(slots=True)
class Totals:
    """The five running totals of one seller and currency, or a change to them."""

    pending_minor: int = 0
    captured_minor: int = 0
    refunded_minor: int = 0
    fees_minor: int = 0
    paid_out_minor: int = 0

    @property
    def available_minor(self) -> int:
        return available_minor(self)

    def add(self, other: HasTotals) -> None:
        add_to(self, other)

    def fields(self) -> dict[str, int]:
        """``{"pending_minor": ..., ...}``: to build an account row or delta from."""
        return {name: getattr(self, name) for name in TOTAL_FIELDS}

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Totals:
        """The totals of a row with the ``*_minor`` columns."""
        return cls(*(int(row[name]) for name in TOTAL_FIELDS))


def unpaid_minor(amount_minor: int, captured_minor: int, *, open: bool) -> int:
    """What a buyer still owes on an order: its share of the seller's ``pending``."""
    return max(amount_minor - captured_minor, 0) if open else 0


class OrderLike(Protocol):
    """What ``pending`` needs to know of an order across its events."""

    amount_minor: int
    captured_minor: int
    open: bool


@dataclass(slots=True)
class OrderPending:
    """An order's part in ``pending``; closed when cancelled or paid in full."""

    amount_minor: int
    captured_minor: int = 0
    open: bool = True

    @property
    def unpaid_minor(self) -> int:
        return unpaid_minor(self.amount_minor, self.captured_minor, open=self.open)


def effect(
    event_type: str,
    *,
    amount_minor: int = 0,
    fee_minor: int = 0,
    order: OrderLike | None = None,
) -> Totals:
    """The change one event makes to its seller's totals; advances ``order``.

    ``order`` is the state, before this event, of the order a capture or a
    cancellation is for (``None`` if unknown: then ``pending`` does not move);
    it is updated in place to its state after the event. A type outside
    :data:`MONEY_TYPES` changes nothing.
    """
    change = Totals()
    unpaid = (
        0
        if order is None
        else unpaid_minor(order.amount_minor, order.captured_minor, open=order.open)
    )
    if event_type == PLACED:
        change.pending_minor = amount_minor
    elif event_type == CAPTURED:
        change.captured_minor = amount_minor
        change.fees_minor = fee_minor
        if order is not None:
            change.pending_minor = -min(amount_minor, unpaid)
            order.captured_minor += amount_minor
            if order.captured_minor >= order.amount_minor:
                order.open = False  # paid in full: nothing of it is pending any more
    elif event_type == REFUNDED:
        change.refunded_minor = amount_minor
    elif event_type == CANCELLED:
        if order is not None:
            change.pending_minor = -unpaid
            order.open = False
    elif event_type == PAID_OUT:
        change.paid_out_minor = amount_minor
    return change


def balance_json(
    seller_id: str, currency: str, totals: HasTotals, as_of_position: int
) -> dict[str, Any]:
    """A balance as the API answers it (``GET /v1/sellers/{id}/balance``)."""
    return {
        "seller_id": seller_id,
        "currency": currency,
        "pending": format_minor(totals.pending_minor, currency),
        "available": format_minor(available_minor(totals), currency),
        "captured_total": format_minor(totals.captured_minor, currency),
        "refunded_total": format_minor(totals.refunded_minor, currency),
        "fees_total": format_minor(totals.fees_minor, currency),
        "paid_out_total": format_minor(totals.paid_out_minor, currency),
        "as_of_position": as_of_position,
    }
