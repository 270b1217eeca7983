"""Deciding one command: a table from command type to its handler.

A handler loads what it needs through the batch, asks the aggregates to
decide (they raise the rule a fact breaks), and returns the ``Unit`` to
append: the new events plus the index rows, account deltas and unique
claims committed with them. Handlers do no I/O of their own beyond the
batch's reads; the writer commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final
from uuid import UUID

from ledger.app.batch import Batch
from ledger.app.repository import created, unit_of
from ledger.domain import balances
from ledger.domain.commands import (
    CancelOrder,
    CapturePayment,
    Command,
    FailPayment,
    IssueRefund,
    NoteOrderStatus,
    OrderFact,
    PlaceOrder,
    SendPayout,
)
from ledger.domain.errors import (
    OrderExists,
    PaymentExists,
    PayoutExists,
    RefundExists,
    UnknownOrder,
    UnknownSeller,
    ValidationError,
)
from ledger.domain.orders import Order, order_stream_id
from ledger.domain.sellers import Seller, seller_stream_id
from ledger.store.keys import Claim
from ledger.store.units import AccountDelta, Unit

__all__ = ["HANDLERS", "claims_of", "decide", "require_seller", "stream_hints"]

#: Gateways that allow one successful payment per merchant order id (Midtrans:
#: "Order ID should be unique for every transaction"), and sign that order id:
#: a capture of theirs is unique per order, whatever transaction id it claims.
_ONE_PAYMENT_PER_ORDER: Final = frozenset({"midtrans"})
#: the event class the library's ``@event("Placed")`` made on ``Order``
_PLACED: Final[type[Any]] = Order.Placed  # type: ignore[attr-defined]


def _order_claim(gateway: str, order_id: str) -> Claim | None:
    return ("gateway_order", gateway, order_id) if gateway in _ONE_PAYMENT_PER_ORDER else None


def _payout_claim(reference: str) -> Claim:
    return ("payout", "", reference)


def claims_of(c: Command) -> tuple[Claim, ...]:
    """The unique names deciding this command will look up with the batch's keys."""
    if isinstance(c, CapturePayment):
        order_claim = _order_claim(c.gateway, c.order_id) if c.order_id else None
        payment: Claim = ("payment", c.gateway, c.gateway_ref)
        return (payment,) if order_claim is None else (payment, order_claim)
    if isinstance(c, IssueRefund):
        return (("refund", c.gateway, c.gateway_ref),)
    if isinstance(c, SendPayout):
        return (_payout_claim(c.reference),)
    return ()


def stream_hints(c: Command) -> tuple[UUID, ...]:
    """The streams deciding this command will read, so a batch loads them at once."""
    hints: list[UUID] = []
    if isinstance(c, PlaceOrder | SendPayout):
        hints.append(seller_stream_id(c.seller_id))
    if isinstance(c, PlaceOrder | OrderFact) and c.channel is not None and c.order_id is not None:
        hints.append(order_stream_id(c.channel, c.order_id))
    return tuple(hints)


async def require_seller(batch: Batch, seller_id: str) -> Seller:
    seller = await batch.get(seller_stream_id(seller_id))
    if not isinstance(seller, Seller):
        raise UnknownSeller(f"seller {seller_id} is not registered", field="seller_id")
    return seller


async def _require_order(batch: Batch, command: OrderFact) -> Order:
    if command.channel is None or command.order_id is None:
        raise ValidationError("channel and order_id are required", field="channel")
    order = await batch.get(order_stream_id(command.channel, command.order_id))
    scope = command.seller_scope
    if not isinstance(order, Order) or (scope is not None and order.seller_id != scope):
        raise UnknownOrder(
            f"no order {command.order_id} on channel {command.channel}", field="order_id"
        )
    return order


async def _check_shop(batch: Batch, order: Order, shop_id: str) -> None:
    seller = await batch.get(seller_stream_id(order.seller_id))
    if not isinstance(seller, Seller) or seller.channels.get(order.channel) != shop_id:
        raise UnknownOrder(
            f"order {order.order_id} does not belong to shop {shop_id}", field="shop_id"
        )


async def _available(batch: Batch, seller_id: str, currency: str) -> int:
    """Fresh from the database, plus what this batch already decided."""
    row = await batch.store.account(seller_id, currency, batch.conn)
    available = 0 if row is None else balances.available_minor(row)
    pending = batch.accounts.get((seller_id, currency))
    return available + (pending.available_minor if pending else 0)


def _delta(
    batch: Batch,
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
    batch.accounts.setdefault((seller_id, currency), AccountDelta(seller_id, currency)).add(delta)
    return delta


def _pending_of(order: Order) -> balances.OrderPending:
    """The order's part in pending before a command (the money rule moves it)."""
    return balances.OrderPending(order.amount_minor, order.captured_minor, open=not order.cancelled)


# -- the handlers ----------------------------------------------------------------------------


async def place_order(batch: Batch, c: PlaceOrder) -> Unit:
    seller = await require_seller(batch, c.seller_id)
    stream_id = order_stream_id(c.channel, c.order_id)
    if await batch.get(stream_id) is not None:
        raise OrderExists(f"order {c.order_id} on {c.channel} already exists", field="order_id")
    # Placing an order checks no rule of the order's own (its __init__ only
    # sets state): its event is written as the library would store it,
    # without building the aggregate (``created``).
    order, event = created(
        _PLACED,
        Order,
        stream_id,
        seller_id=seller.seller_id,
        order_id=c.order_id,
        channel=c.channel,
        amount_minor=c.amount_minor,
        currency=c.currency,
        occurred_at=c.occurred_at.isoformat(),
        idempotency_key=c.idempotency_key,
        metadata=c.metadata,
    )
    batch.remember(order, 0)
    unit = Unit(events=[event], base_versions={stream_id: 0})
    unit.accounts = [_delta(batch, seller.seller_id, c.currency, c.type, amount=c.amount_minor)]
    unit.order_index = [(c.channel, c.order_id, seller.seller_id)]
    unit.reads = {seller.id}
    return unit


async def send_payout(batch: Batch, c: SendPayout) -> Unit:
    seller = await require_seller(batch, c.seller_id)
    payout = _payout_claim(c.reference)
    if await batch.is_taken(payout):
        raise PayoutExists(f"payout {c.reference} is already recorded", field="reference")
    base = seller.version
    available = await _available(batch, c.seller_id, c.currency)
    seller.pay_out(
        amount_minor=c.amount_minor,
        currency=c.currency,
        reference=c.reference,
        available_minor=available,
        occurred_at=c.occurred_at.isoformat(),
        idempotency_key=c.idempotency_key,
        metadata=c.metadata,
    )
    batch.remember(seller, base)
    unit = unit_of([seller])
    unit.accounts = [_delta(batch, c.seller_id, c.currency, c.type, amount=c.amount_minor)]
    unit.payout = (c.seller_id, c.currency, c.amount_minor)
    unit.fact_claims = [payout]
    batch.take(payout)
    return unit


async def _order_of(batch: Batch, c: OrderFact, shop_id: str | None = None) -> tuple[Order, int]:
    """The order a fact is about (in the caller's scope, of the named shop), and
    its version before this decision."""
    order = await _require_order(batch, c)
    if shop_id is not None:
        await _check_shop(batch, order, shop_id)
    return order, order.version


def _order_unit(
    batch: Batch,
    order: Order,
    base: int,
    accounts: list[AccountDelta],
    payment_index: list[tuple[str, str, str, str]] | None = None,
    fact_claims: list[Claim] | None = None,
) -> Unit:
    batch.remember(order, base)
    unit = unit_of([order])
    unit.accounts = accounts
    unit.payment_index = payment_index or []
    unit.fact_claims = fact_claims or []
    for claim in unit.fact_claims:
        batch.take(claim)
    return unit


async def capture_payment(batch: Batch, c: CapturePayment) -> Unit:
    order, base = await _order_of(batch, c)
    pending_before = _pending_of(order)
    fact_claims: list[Claim] = []
    payment: Claim = ("payment", c.gateway, c.gateway_ref)
    if await batch.is_taken(payment):
        raise PaymentExists(
            f"{c.gateway} payment {c.gateway_ref} is already captured", field="gateway_ref"
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
        occurred_at=c.occurred_at.isoformat(),
        idempotency_key=c.idempotency_key,
        metadata=c.metadata,
    )
    delta = _delta(
        batch,
        order.seller_id,
        order.currency,
        c.type,
        amount=c.amount_minor,
        fee=c.fee_minor,
        order=pending_before,
    )
    payment_index = [(c.gateway, c.gateway_ref, order.channel, order.order_id)]
    batch.take(payment)
    return _order_unit(batch, order, base, [delta], payment_index, fact_claims)


async def issue_refund(batch: Batch, c: IssueRefund) -> Unit:
    order, base = await _order_of(batch, c)
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
        occurred_at=c.occurred_at.isoformat(),
        idempotency_key=c.idempotency_key,
        metadata=c.metadata,
    )
    delta = _delta(batch, order.seller_id, order.currency, c.type, amount=c.amount_minor)
    return _order_unit(batch, order, base, [delta], fact_claims=[refund])


async def fail_payment(batch: Batch, c: FailPayment) -> Unit:
    order, base = await _order_of(batch, c)
    if c.currency_stated:
        order.check_currency(c.currency)
    order.fail_payment(
        gateway=c.gateway,
        gateway_ref=c.gateway_ref,
        reason=c.reason,
        occurred_at=c.occurred_at.isoformat(),
        idempotency_key=c.idempotency_key,
        metadata=c.metadata,
    )
    return _order_unit(batch, order, base, [])


async def cancel_order(batch: Batch, c: CancelOrder) -> Unit:
    order, base = await _order_of(batch, c, c.shop_id)
    pending_before = _pending_of(order)
    if c.currency_stated:
        order.check_currency(c.currency)
    order.cancel(
        occurred_at=c.occurred_at.isoformat(),
        idempotency_key=c.idempotency_key,
        metadata=c.metadata,
    )
    delta = _delta(batch, order.seller_id, order.currency, c.type, order=pending_before)
    return _order_unit(batch, order, base, [delta])


async def note_order_status(batch: Batch, c: NoteOrderStatus) -> Unit:
    order, base = await _order_of(batch, c, c.shop_id)
    order.note_status(
        source=c.source or "client",
        status=c.status,
        occurred_at=c.occurred_at.isoformat(),
        idempotency_key=c.idempotency_key,
        metadata=c.metadata,
    )
    return _order_unit(batch, order, base, [])


#: One handler per command type. The value takes that type only; ``decide``
#: looks it up by the command's exact class.
HANDLERS: Final[dict[type[Command], Callable[[Batch, Any], Awaitable[Unit]]]] = {
    PlaceOrder: place_order,
    CancelOrder: cancel_order,
    NoteOrderStatus: note_order_status,
    CapturePayment: capture_payment,
    FailPayment: fail_payment,
    IssueRefund: issue_refund,
    SendPayout: send_payout,
}


async def decide(batch: Batch, command: Command) -> Unit:
    """The unit recording ``command``, or the rule it breaks."""
    handler = HANDLERS.get(type(command))
    if handler is None:  # pragma: no cover - parse_command builds no other type
        raise ValidationError(f"unsupported type {command.type}", field="type")
    return await handler(batch, command)
