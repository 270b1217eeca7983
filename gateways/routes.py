"""Gateway webhooks and the suspense list over HTTP (CONTRACT sections 3 and 4).

``GatewayRoutes`` is an extension of ``ledger.api.http.create_app``: it adds

- ``POST /v1/gateways/midtrans/notifications``, ``/v1/gateways/xendit/callbacks``
  and ``/v1/gateways/shopee/push``: public routes (no Bearer key), each
  authenticated by the gateway's own signature or token;
- ``GET /v1/suspense`` (admin, auditor) and ``POST /v1/suspense/{id}/resolve``
  (admin).

A webhook is handled in this order, and nothing in the body is used before
the signature passes: read the raw body (over 1 MiB: ``413``), refuse if the
gateway's secret is not configured (``401 gateway_not_configured``: the
gateway keeps the notification and retries, which is what we want until the
operator sets the secret), ``verify`` (``401 invalid_signature``, nothing
recorded), ``parse`` (``400``/``422`` for a body no adapter can read), then
one canonical event at a time:

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

Midtrans adds one step before 1: its signature does not cover what says
money moved (``transaction_status``, ``transaction_id``, ``refunds``), so a
notification whose events move money asks Midtrans' Get Status API
(``gateways.midtrans_api``) unless the ledger already holds every such fact
(those are answered ``duplicate``), and ``midtrans.confirm`` compares. A
confirmed fact is the one built from Midtrans' answer, and a suspended fact
under its key is retried as that, never as the stored claim. A fact not
confirmed (API away, slow, non-200, unreadable, or disagreeing) goes to
suspense with reason ``unconfirmed`` and is not retried until a later
delivery is confirmed.

The answer is ``200 {"status": "ok", "gateway", "results": [...]}`` with one
result per canonical event, ``status`` one of ``recorded``, ``duplicate``,
``suspense`` or ``ignored``. No body gets a 5xx; a 503 means the database
(or the writer) is unavailable and the gateway should retry.

Resolving: ``POST /v1/suspense/{id}/resolve {channel, order_id}`` applies the
stored fact to that order and records ``suspense.resolved`` in the same
transaction (``201``). A rule violation is a ``422`` and the entry stays
open. Resolving again onto the same order answers ``200`` ``duplicate``
(safe to retry); onto another order ``422 suspense_closed`` naming where it
went. An unknown id is ``404``. The applied fact keeps the gateway's
idempotency key and fingerprint, so a later redelivery of the same
notification is a plain duplicate, and the fact is applied at most once
whichever path (redelivery, operator) gets there first. Should a redelivery
have recorded the fact while its entry was still being committed (a narrow
race), the next touch of the entry closes it onto the order holding the fact
(``Ledger.close_suspense``); if that key holds a different body, ``409`` and
the entry stays open for a person to look at.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final
from uuid import UUID

import orjson
from aiohttp import web

from gateways import midtrans, midtrans_api, shopee, xendit
from ledger.api.http import LEDGER, SETTINGS, STORE, int_param, json_response, read_json, require
from ledger.app.ledger import Ledger, Recorded
from ledger.contract.messages import format_instant
from ledger.domain.commands import (
    CHANNELS,
    CancelOrder,
    Command,
    NoteOrderStatus,
    UnreadableFact,
    parse_command,
    parse_identifier,
)
from ledger.domain.errors import (
    BadRequest,
    IdempotencyConflict,
    NotFound,
    OrderClosed,
    PayloadTooLarge,
    PaymentExists,
    RefundExists,
    RuleViolation,
    SuspenseClosed,
    Unauthorized,
    UnknownSeller,
    ValidationError,
)
from ledger.domain.money import format_minor, parse_amount, parse_currency
from ledger.domain.suspense import suspense_stream_id
from ledger.store.postgres import LedgerStore

__all__ = ["GatewayNotConfigured", "GatewayRoutes"]

log = logging.getLogger("omniledger.gateways")

#: ``GET /v1/suspense`` answers at most this many open entries (oldest first).
SUSPENSE_PAGE_MAX: Final[int] = 1000


#: Suspense reason of a Midtrans money fact its status API did not confirm.
UNCONFIRMED: Final = "unconfirmed"

MIDTRANS_PATH: Final = "/v1/gateways/midtrans/notifications"
XENDIT_PATH: Final = "/v1/gateways/xendit/callbacks"
SHOPEE_PATH: Final = "/v1/gateways/shopee/push"


class GatewayNotConfigured(Unauthorized):
    """The gateway's secret is not set on this server: 401, nothing read or recorded.

    401 rather than 503: the request cannot be authenticated, and a 5xx must
    mean "the database is down". Any non-2xx keeps the notification queued at
    the gateway, so nothing is lost while the operator sets the secret.
    """

    code = "gateway_not_configured"


class GatewayRoutes:
    """The webhook and suspense routes; secrets come from the app's ``Settings``."""

    def setup(self, app: web.Application) -> None:
        app.cleanup_ctx.append(midtrans_api.client_context)
        app.router.add_post(MIDTRANS_PATH, midtrans_notification)
        app.router.add_post(XENDIT_PATH, xendit_callback)
        app.router.add_post(SHOPEE_PATH, shopee_push)
        app.router.add_get("/v1/suspense", list_suspense)
        app.router.add_post("/v1/suspense/{suspense_id}/resolve", resolve_suspense)


# -- webhooks ------------------------------------------------------------------------------


async def midtrans_notification(request: web.Request) -> web.Response:
    raw = await _read_body(request)
    server_key = request.app[SETTINGS].midtrans_server_key
    if not server_key:
        raise GatewayNotConfigured("OMNILEDGER_MIDTRANS_SERVER_KEY is not set on this server")
    midtrans.verify(raw, server_key=server_key)
    payload = midtrans.parse(raw)
    events = midtrans.to_events(payload)
    if not midtrans.moves_money(events):
        return await _apply(request, midtrans.GATEWAY, events)
    # the signature does not cover what says money moved: Midtrans' own
    # record of the transaction decides, unless the ledger holds the fact already
    ledger, store = request.app[LEDGER], request.app[STORE]
    keys = list(dict.fromkeys(str(e["idempotency_key"]) for e in events))
    known = await ledger.recorded(keys)
    checked: dict[str, midtrans.Checked] = {}
    if any(key not in known for key in keys):
        try:
            answer = await request.app[midtrans_api.STATUS_CLIENT].status(payload["order_id"])
            found = midtrans.confirm(payload, answer)
        except midtrans_api.StatusUnavailable as error:
            found = midtrans.unconfirmed(payload, str(error))
        checked = {str(c.event["idempotency_key"]): c for c in found}
    results: list[dict[str, Any]] = []
    for key in keys:
        if key in known:  # "duplicate" moves no money: nothing to confirm
            event = next(e for e in events if e["idempotency_key"] == key)
            results.append(_result(event, "duplicate", position=known[key][1]))
        else:
            results.append(await _apply_checked(ledger, store, checked[key]))
    return json_response({"status": "ok", "gateway": midtrans.GATEWAY, "results": results})


async def _apply_checked(
    ledger: Ledger, store: LedgerStore, check: midtrans.Checked
) -> dict[str, Any]:
    if check.unconfirmed is None:
        return await _apply_event(ledger, store, midtrans.GATEWAY, check.event, fresh=True)
    key = check.event["idempotency_key"]
    log.warning("midtrans fact %s not confirmed: %s", key, check.unconfirmed)
    return await _hold(ledger, store, midtrans.GATEWAY, check.event, UNCONFIRMED)


async def xendit_callback(request: web.Request) -> web.Response:
    raw = await _read_body(request)
    token = request.app[SETTINGS].xendit_callback_token
    if not token:
        raise GatewayNotConfigured("OMNILEDGER_XENDIT_CALLBACK_TOKEN is not set on this server")
    xendit.verify(request.headers.get(xendit.TOKEN_HEADER), expected_token=token)
    events = xendit.to_events(xendit.parse(raw))
    return await _apply(request, xendit.GATEWAY, events)


async def shopee_push(request: web.Request) -> web.Response:
    raw = await _read_body(request)
    settings = request.app[SETTINGS]
    if not settings.shopee_partner_key or not settings.shopee_callback_url:
        raise GatewayNotConfigured(
            "OMNILEDGER_SHOPEE_PARTNER_KEY and OMNILEDGER_SHOPEE_CALLBACK_URL must both be set"
        )
    shopee.verify(
        raw,
        request.headers.get(shopee.SIGNATURE_HEADER),
        partner_key=settings.shopee_partner_key,
        callback_url=settings.shopee_callback_url,
    )
    events = shopee.to_events(shopee.parse(raw))
    return await _apply(request, shopee.GATEWAY, events)


async def _read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("the body is larger than 1 MiB") from None


async def _apply(request: web.Request, gateway: str, events: list[dict[str, Any]]) -> web.Response:
    ledger = request.app[LEDGER]
    store = request.app[STORE]
    results: list[dict[str, Any]] = []
    # one at a time, in the notification's order: a Midtrans refund list is
    # decided refund by refund, so "refunds exceed the capture" is deterministic
    for event in events:
        results.append(await _apply_event(ledger, store, gateway, event))
    if not results:
        results.append({"status": "ignored", "reason": "no_ledger_effect"})
    return json_response({"status": "ok", "gateway": gateway, "results": results})


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
        command = parse_command(raw, gateway_facts=True)
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
        return await _suspend(ledger, gateway, _fallback_command(raw, invalid), raw, invalid.code)
    try:
        if isinstance(matched, BaseException):
            raise matched
        assert matched is not None
        result = await ledger.record(matched)
    except IdempotencyConflict:
        log.warning("%s redelivered %s with a different body; kept the first", gateway, key)
        return _result(raw, "duplicate", conflict=True)
    except RuleViolation as error:
        if isinstance(error, OrderClosed) and command.type == "order.cancelled":
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
    if not isinstance(command, CancelOrder | NoteOrderStatus) or command.shop_id is None:
        return  # only these types name a shop
    channel = command.channel or "shopee"
    if await store.seller_for_channel_account(channel, command.shop_id) is None:
        raise UnknownSeller(f"no seller registered {channel} shop {command.shop_id}")


async def _suspend(
    ledger: Ledger, gateway: str, command: Command, raw: dict[str, Any], reason: str
) -> dict[str, Any]:
    suspense_id = suspense_stream_id(command.idempotency_key)
    try:
        result = await ledger.record_suspense(command, gateway=gateway, reason=reason, raw=raw)
    except IdempotencyConflict:
        log.warning(
            "%s fact %s already in suspense with another body", gateway, command.idempotency_key
        )
        return _result(raw, "suspense", reason=reason, suspense_id=suspense_id, conflict=True)
    if result.status == "recorded":
        log.warning("%s fact %s put in suspense: %s", gateway, command.idempotency_key, reason)
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
        command = parse_command(raw, gateway_facts=True)
    except ValidationError as error:
        command = _fallback_command(raw, error)
    return await _suspend(ledger, gateway, command, raw, reason)


def _fallback_command(raw: dict[str, Any], cause: ValidationError) -> Command:
    """The few fields ``record_suspense`` needs, read from an event ``parse_command`` refused.

    The adapters always produce a valid key, time, currency and amount; if one
    of those is broken too, the notification is refused with the first error.
    """
    from ledger.domain.commands import parse_timestamp

    try:
        currency = parse_currency(raw.get("currency"))
        amount = raw.get("amount")
        return UnreadableFact(
            idempotency_key=str(raw["idempotency_key"]),
            occurred_at=parse_timestamp(raw.get("occurred_at")),
            amount_minor=None if amount is None else parse_amount(amount, currency),
            currency=currency,
            fingerprint=orjson.dumps(raw, option=orjson.OPT_SORT_KEYS),
        )
    except ValidationError:
        raise cause from None


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
        command = parse_command(raw if fresh else _stored_event(entry), gateway_facts=True)
        await _require_shop(store, command)
        command = await ledger.resolve_order(command)
        result = await _apply_suspended(ledger, store, entry_id, command)
    except SuspenseClosed:
        return _result(raw, "duplicate")  # resolved meanwhile by someone else
    except IdempotencyConflict:
        log.error("suspense %s: its key holds another body; left open", entry_id)
        return _result(raw, "duplicate", conflict=True)
    except (ValidationError, RuleViolation):
        return still
    return _result(raw, result.status, position=result.position, suspense_id=entry_id)


async def _apply_suspended(
    ledger: Ledger, store: LedgerStore, entry_id: UUID, command: Command
) -> Recorded:
    """Applies a suspended fact and closes its entry; repairs an entry whose fact got in already.

    The fact keeps its gateway idempotency key, so it is applied at most once
    whichever path gets there first. A ``duplicate`` answer means the key was
    taken: by an earlier resolution (the entry is closed), or by a redelivery
    that recorded the fact while its suspense entry was being committed; then
    the entry is closed onto the order that holds the fact. If the key holds
    a different body (``IdempotencyConflict``), the entry is left open for an
    operator and the conflict is raised.
    """
    now = datetime.now(UTC).isoformat()
    result = await ledger.resolve_suspense(entry_id, command, occurred_at=now)
    if result.status == "recorded":
        return result
    entry = await store.suspense_entry(entry_id)
    if entry is not None and entry["resolved_position"] is None:
        history = await store.stream_history(result.stream_id)
        holder = history[0]["data"] if history else {}
        if "channel" in holder and "order_id" in holder:
            log.warning("suspense %s: its fact was applied by another path; closing", entry_id)
            try:
                await ledger.close_suspense(
                    entry_id,
                    channel=str(holder["channel"]),
                    order_id=str(holder["order_id"]),
                    occurred_at=now,
                )
            except SuspenseClosed:
                pass
    return result


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


# -- the suspense list -----------------------------------------------------------------------


def _stored_event(entry: dict[str, Any]) -> dict[str, Any]:
    event = entry["event"]
    # asyncpg hands jsonb back as text unless a codec is set on the pool
    value = orjson.loads(event) if isinstance(event, str | bytes) else event
    if not isinstance(value, dict):  # pragma: no cover - only dicts are ever stored
        raise ValidationError("the suspended event is not an object")
    return value


def _entry_json(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(entry["id"]),
        "gateway": entry["gateway"],
        "reason": entry["reason"],
        "event": _stored_event(entry),
        "amount": format_minor(entry["amount_minor"], entry["currency"]),
        "currency": entry["currency"],
        "position": entry["position"],
        "recorded_at": format_instant(entry["recorded_at"]),
    }


def _entry_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["suspense_id"])
    except ValueError:
        raise NotFound("no such suspense entry") from None


@require("admin", "auditor")
async def list_suspense(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", SUSPENSE_PAGE_MAX, low=1, high=SUSPENSE_PAGE_MAX)
    after = int_param(request, "after", 0, low=0, high=2**62)
    rows = await request.app[STORE].open_suspense(limit, after)
    next_after = rows[-1]["position"] if len(rows) == limit else None
    return json_response({"suspense": [_entry_json(row) for row in rows], "next_after": next_after})


@require("admin")
async def resolve_suspense(request: web.Request) -> web.Response:
    entry_id = _entry_id(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object {channel, order_id}")
    channel = body.get("channel")
    if not isinstance(channel, str) or channel not in CHANNELS:
        raise ValidationError(
            f"channel must be one of {', '.join(sorted(CHANNELS))}", field="channel"
        )
    order_id = parse_identifier(body.get("order_id"), "order_id")
    store = request.app[STORE]
    entry = await store.suspense_entry(entry_id)
    if entry is None:
        raise NotFound("no such suspense entry")
    command = _command_onto(_stored_event(entry), channel, order_id)
    result: Recorded | None
    try:
        # also for an entry already resolved: the fact's key then answers
        # "duplicate" with the original position, and nothing is decided again
        result = await _apply_suspended(request.app[LEDGER], store, entry_id, command)
    except SuspenseClosed:
        result = None
    out = {"suspense_id": str(entry_id), "channel": channel, "order_id": order_id}
    if result is not None and result.status == "recorded":
        return json_response(result.as_dict() | out, 201)
    target = await _resolved_onto(store, entry_id)
    if target != (channel, order_id):
        where = f"{target[0]}/{target[1]}" if target else "another order"
        raise SuspenseClosed(
            f"this suspense entry is already resolved onto {where}",
            suspense_id=str(entry_id),
            channel=target[0] if target else None,
            order_id=target[1] if target else None,
        )
    body = result.as_dict() if result is not None else {"status": "duplicate"}
    return json_response(body | out, 200)


def _command_onto(stored: dict[str, Any], channel: str, order_id: str) -> Command:
    """The stored gateway fact, aimed at ``(channel, order_id)`` chosen by an operator.

    ``payment_ref`` and ``shop_id`` were the gateway's way of finding the
    order; the operator names it instead. The fingerprint stays the gateway
    body's, so a later redelivery of the notification is an exact duplicate.
    """
    fields = {k: v for k, v in stored.items() if k not in ("payment_ref", "shop_id")}
    fields["channel"] = channel
    fields["order_id"] = order_id
    command = parse_command(fields, gateway_facts=True)
    return replace(command, fingerprint=orjson.dumps(stored, option=orjson.OPT_SORT_KEYS))


async def _resolved_onto(store: LedgerStore, entry_id: UUID) -> tuple[str, str] | None:
    """``(channel, order_id)`` an entry was resolved onto, from its ``suspense.resolved``."""
    history = await store.stream_history(entry_id)
    resolved = [e["data"] for e in history if e["type"] == "suspense.resolved"]
    if not resolved:
        return None
    return str(resolved[-1].get("channel")), str(resolved[-1].get("order_id"))
