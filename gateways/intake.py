"""Apply or suspend: what becomes of a gateway's authenticated facts (CONTRACT sections 3 and 4).

``gateways.routes`` reads, verifies and parses a webhook, then hands the
canonical events here; nothing here speaks HTTP (no aiohttp: the one outgoing
call, Midtrans' Get Status, is passed in as an async callable). It takes the
``Ledger``, the ``LedgerStore`` and plain values and returns one plain result
dict per event, or raises the ledger's errors. One event at a time:

1. a suspense entry for the event's idempotency key means this is a
   redelivery of a fact we could not apply. If the entry is open, the
   *stored* fact is tried again through ``Ledger.resolve_suspense`` (applied
   and the entry closed in one transaction; the same matching rules as a
   first delivery) and stays in suspense if it still cannot be applied; if
   it is resolved, the fact is in the ledger already: ``duplicate``;
2. otherwise ``parse_command(gateway_facts=True)``, the seller by Shopee
   ``shop_id``, ``Ledger.resolve_order`` (channel by order id, order by the
   refunded payment), ``Ledger.record``;
3. a ``RuleViolation`` (unknown order or seller, overpayment, currency
   mismatch, closed order, refund over capture, paid order cancelled) sends
   the authenticated fact to suspense with the violation's code as reason
   (DESIGN rule 8: never dropped, never credited). So does an event whose
   order id the ledger cannot hold (longer than 64 characters, say): reason
   ``validation_error``. The one exception is a cancellation of an order that
   is already cancelled, which the ledger already reflects: ``ignored``;
4. ``idempotency_conflict`` (same gateway id, different incidental body) is
   answered as a duplicate and logged: the gateway must stop retrying.

Midtrans adds one step before 1 (:func:`apply_midtrans`): its signature does
not cover what says money moved (``transaction_status``, ``transaction_id``,
``refunds``), so a notification whose events move money asks Midtrans' Get
Status API unless the ledger already holds every such fact (those are
answered ``duplicate``), and ``midtrans.confirm`` compares. A confirmed fact
is the one built from Midtrans' answer, and a suspended fact under its key is
retried as that, never as the stored claim. A fact not confirmed (API away,
slow, non-200, unreadable, or disagreeing) goes to suspense with reason
``unconfirmed`` and is not retried until a later delivery is confirmed.

A result is ``{idempotency_key, type, status}`` and what else applies;
``status`` is one of ``recorded``, ``duplicate``, ``suspense`` or ``ignored``.

A suspended fact is applied (and its entry closed) by
``gateways.suspense.apply_suspended``; every construction and read of a
ledger ``Command`` is in ``gateways._commands``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final
from uuid import UUID

from gateways import midtrans, suspense
from gateways._commands import (
    fallback_command,
    gateway_command,
    is_cancellation,
    key_of,
    shop_of,
)
from gateways.errors import StatusUnavailable
from ledger.app.ledger import Ledger
from ledger.domain.commands import Command
from ledger.domain.errors import (
    IdempotencyConflict,
    OrderClosed,
    PaymentExists,
    RefundExists,
    RuleViolation,
    SuspenseClosed,
    UnknownSeller,
    ValidationError,
)
from ledger.domain.suspense import suspense_stream_id
from ledger.store import LedgerStore

__all__ = ["UNCONFIRMED", "StatusCall", "apply_events", "apply_midtrans"]

log = logging.getLogger("omniledger.gateways")

#: Suspense reason of a Midtrans money fact its status API did not confirm.
UNCONFIRMED: Final = "unconfirmed"

#: Midtrans' Get Status for an order id: the decoded answer, or ``StatusUnavailable``.
StatusCall = Callable[[str], Awaitable[dict[str, Any]]]


async def apply_events(
    ledger: Ledger, store: LedgerStore, gateway: str, events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One result per event; an ``ignored`` one if there are no events."""
    results: list[dict[str, Any]] = []
    # one at a time, in the notification's order: a Midtrans refund list is
    # decided refund by refund, so "refunds exceed the capture" is deterministic
    for event in events:
        results.append(await _apply_event(ledger, store, gateway, event))
    if not results:
        results.append({"status": "ignored", "reason": "no_ledger_effect"})
    return results


async def apply_midtrans(
    ledger: Ledger,
    store: LedgerStore,
    payload: dict[str, Any],
    events: list[dict[str, Any]],
    status: StatusCall,
) -> list[dict[str, Any]]:
    """A verified Midtrans notification: its money facts confirmed with ``status`` first."""
    if not midtrans.moves_money(events):
        return await apply_events(ledger, store, midtrans.GATEWAY, events)
    # the signature does not cover what says money moved: Midtrans' own
    # record of the transaction decides, unless the ledger holds the fact already
    keys = list(dict.fromkeys(str(e["idempotency_key"]) for e in events))
    known = await ledger.recorded(keys)
    checked: dict[str, midtrans.Checked] = {}
    if any(key not in known for key in keys):
        try:
            answer = await status(payload["order_id"])
            found = midtrans.confirm(payload, answer)
        except StatusUnavailable as error:
            found = midtrans.unconfirmed(payload, str(error))
        checked = {str(c.event["idempotency_key"]): c for c in found}
    results: list[dict[str, Any]] = []
    for key in keys:
        if key in known:  # "duplicate" moves no money: nothing to confirm
            event = next(e for e in events if e["idempotency_key"] == key)
            results.append(_result(event, "duplicate", position=known[key][1]))
        else:
            results.append(await _apply_checked(ledger, store, checked[key]))
    return results


async def _apply_checked(
    ledger: Ledger, store: LedgerStore, check: midtrans.Checked
) -> dict[str, Any]:
    if check.unconfirmed is None:
        return await _apply_event(ledger, store, midtrans.GATEWAY, check.event, fresh=True)
    key = check.event["idempotency_key"]
    log.warning("midtrans fact %s not confirmed: %s", key, check.unconfirmed)
    return await _hold(ledger, store, midtrans.GATEWAY, check.event, UNCONFIRMED)


async def _apply_event(
    ledger: Ledger, store: LedgerStore, gateway: str, raw: dict[str, Any], *, fresh: bool = False
) -> dict[str, Any]:
    """Records one canonical fact, or puts it in suspense.

    ``fresh``: ``raw`` was just confirmed with the gateway, so a suspended
    fact under its key is retried as ``raw``, not as the stored claim (which
    may be a forgery that went to suspense for being unconfirmed).
    """
    key = str(raw["idempotency_key"])
    command: Command | None
    invalid: ValidationError | None = None
    try:
        command = gateway_command(raw)
    except ValidationError as error:
        command, invalid = None, error
    # two independent lookups, run side by side: one round trip, not two
    entry, matched = await asyncio.gather(
        store.suspense_entry(suspense_stream_id(key)),
        _match(ledger, store, command),
        return_exceptions=True,
    )
    if isinstance(entry, BaseException):
        raise entry
    if entry is not None:
        if entry["resolved_position"] is None:
            return await _retry_suspended(ledger, store, entry, raw, fresh=fresh)
        # resolving recorded the fact under this very key: nothing left to do
        return _result(raw, "duplicate", suspense_id=entry["id"])
    if command is None:
        assert invalid is not None
        # authenticated and read by the adapter, but not a shape the ledger can
        # hold (an order id over 64 characters): kept, for an operator to place
        return await _suspend(ledger, gateway, fallback_command(raw, invalid), raw, invalid.code)
    try:
        if isinstance(matched, BaseException):
            raise matched
        assert matched is not None
        result = await ledger.record(matched)
    except IdempotencyConflict:
        log.warning("%s redelivered %s with a different body; kept the first", gateway, key)
        return _result(raw, "duplicate", conflict=True)
    except RuleViolation as error:
        if isinstance(error, OrderClosed) and is_cancellation(command):
            return _result(raw, "ignored", reason=error.code)  # already cancelled
        if isinstance(error, PaymentExists | RefundExists):
            # the gateway's reference is recorded already (by this path under
            # another key, or through POST /v1/events): no new money to keep
            log.info("%s fact %s is recorded already: %s", gateway, key, error.message)
            return _result(raw, "duplicate", reason=error.code)
        return await _suspend(ledger, gateway, command, raw, error.code)
    return _result(raw, result.status, position=result.position)


async def _match(ledger: Ledger, store: LedgerStore, command: Command | None) -> Command | None:
    """The command with its order found: Shopee shop, channel by order id, order by payment."""
    if command is None:
        return None
    await _require_shop(store, command)
    return await ledger.resolve_order(command)


async def _require_shop(store: LedgerStore, command: Command) -> None:
    """A Shopee fact names a shop: its seller must have registered that shop id."""
    shop = shop_of(command)
    if shop is None:
        return
    channel, shop_id = shop
    if await store.seller_for_channel_account(channel, shop_id) is None:
        raise UnknownSeller(f"no seller registered {channel} shop {shop_id}")


async def _suspend(
    ledger: Ledger, gateway: str, command: Command, raw: dict[str, Any], reason: str
) -> dict[str, Any]:
    key = key_of(command)
    suspense_id = suspense_stream_id(key)
    try:
        result = await ledger.record_suspense(command, gateway=gateway, reason=reason, raw=raw)
    except IdempotencyConflict:
        log.warning("%s fact %s already in suspense with another body", gateway, key)
        return _result(raw, "suspense", reason=reason, suspense_id=suspense_id, conflict=True)
    if result.status == "recorded":
        log.warning("%s fact %s put in suspense: %s", gateway, key, reason)
    return _result(
        raw,
        "suspense",
        reason=reason,
        suspense_id=suspense_id,
        position=result.position,
        duplicate=result.status == "duplicate",
    )


async def _hold(
    ledger: Ledger, store: LedgerStore, gateway: str, raw: dict[str, Any], reason: str
) -> dict[str, Any]:
    """A fact that must not be applied now (not confirmed): kept in suspense, never credited.

    An open entry under its key stays as it is (its stored fact is not
    retried: nothing was confirmed this time); a resolved one means the fact
    is in the ledger already.
    """
    entry = await store.suspense_entry(suspense_stream_id(str(raw["idempotency_key"])))
    if entry is not None:
        if entry["resolved_position"] is not None:
            return _result(raw, "duplicate", suspense_id=entry["id"])
        return _result(
            raw,
            "suspense",
            reason=entry["reason"],
            suspense_id=entry["id"],
            position=entry["position"],
            duplicate=True,
        )
    try:
        command = gateway_command(raw)
    except ValidationError as error:
        command = fallback_command(raw, error)
    return await _suspend(ledger, gateway, command, raw, reason)


async def _retry_suspended(
    ledger: Ledger,
    store: LedgerStore,
    entry: dict[str, Any],
    raw: dict[str, Any],
    *,
    fresh: bool = False,
) -> dict[str, Any]:
    """A redelivery of a suspended fact: apply it (stored, or ``raw`` if fresh) if it now fits."""
    entry_id: UUID = entry["id"]
    still = _result(
        raw,
        "suspense",
        reason=entry["reason"],
        suspense_id=entry_id,
        position=entry["position"],
        duplicate=True,
    )
    try:
        command = gateway_command(raw if fresh else suspense.stored_event(entry))
        await _require_shop(store, command)
        command = await ledger.resolve_order(command)
        result = await suspense.apply_suspended(ledger, store, entry_id, command)
    except SuspenseClosed:
        return _result(raw, "duplicate")  # resolved meanwhile by someone else
    except IdempotencyConflict:
        log.error("suspense %s: its key holds another body; left open", entry_id)
        return _result(raw, "duplicate", conflict=True)
    except (ValidationError, RuleViolation):
        return still
    return _result(raw, result.status, position=result.position, suspense_id=entry_id)


def _result(raw: dict[str, Any], status: str, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "idempotency_key": raw.get("idempotency_key"),
        "type": raw.get("type"),
        "status": status,
    }
    for name, value in extra.items():
        if value is None or value is False:
            continue
        out[name] = str(value) if isinstance(value, UUID) else value
    return out
