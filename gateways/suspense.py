"""The suspense list: open entries, resolving one onto an order, applying a suspended fact.

No HTTP here (``gateways.routes`` reads the request and answers); plain values
in, plain dicts out, the ledger's errors raised.

Resolving applies the stored fact to the order the operator names and records
``suspense.resolved`` in the same transaction (:func:`resolve` says
``created``). A rule violation is raised and the entry stays open. Resolving
again onto the same order is a ``duplicate`` (safe to retry); onto another
order ``SuspenseClosed`` naming where it went. An unknown id is ``NotFound``.
The applied fact keeps the gateway's idempotency key and fingerprint, so a
later redelivery of the same notification is a plain duplicate, and the fact
is applied at most once whichever path (redelivery, operator) gets there
first. Should a redelivery have recorded the fact while its entry was still
being committed (a narrow race), the next touch of the entry closes it onto
the order holding the fact (``Ledger.close_suspense``); if that key holds a
different body, ``IdempotencyConflict`` and the entry stays open for a person
to look at.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson

from gateways._commands import command_onto
from ledger.app.ledger import Ledger, Recorded
from ledger.contract.messages import format_instant
from ledger.domain.commands import CHANNELS, Command, parse_identifier
from ledger.domain.errors import BadRequest, NotFound, SuspenseClosed, ValidationError
from ledger.domain.money import format_minor
from ledger.store import LedgerStore

__all__ = ["apply_suspended", "open_entries", "resolve", "stored_event"]

log = logging.getLogger("omniledger.gateways")


async def open_entries(store: LedgerStore, limit: int, after: int) -> dict[str, Any]:
    """At most ``limit`` open entries after position ``after``, oldest first, and the next page."""
    rows = await store.open_suspense(limit, after)
    next_after = rows[-1]["position"] if len(rows) == limit else None
    return {"suspense": [_entry_json(row) for row in rows], "next_after": next_after}


def _entry_json(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(entry["id"]),
        "gateway": entry["gateway"],
        "reason": entry["reason"],
        "event": stored_event(entry),
        "amount": format_minor(entry["amount_minor"], entry["currency"]),
        "currency": entry["currency"],
        "position": entry["position"],
        "recorded_at": format_instant(entry["recorded_at"]),
    }


async def resolve(
    ledger: Ledger, store: LedgerStore, entry_id: UUID, body: object
) -> tuple[dict[str, Any], bool]:
    """Applies entry ``entry_id`` to the order ``body`` names: the answer, and whether it was new.

    ``body`` is the operator's ``{channel, order_id}``.
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object {channel, order_id}")
    channel = body.get("channel")
    if not isinstance(channel, str) or channel not in CHANNELS:
        raise ValidationError(
            f"channel must be one of {', '.join(sorted(CHANNELS))}", field="channel"
        )
    order_id = parse_identifier(body.get("order_id"), "order_id")
    entry = await store.suspense_entry(entry_id)
    if entry is None:
        raise NotFound("no such suspense entry")
    command = command_onto(stored_event(entry), channel, order_id)
    result: Recorded | None
    try:
        # also for an entry already resolved: the fact's key then answers
        # "duplicate" with the original position, and nothing is decided again
        result = await apply_suspended(ledger, store, entry_id, command)
    except SuspenseClosed:
        result = None
    out = {"suspense_id": str(entry_id), "channel": channel, "order_id": order_id}
    if result is not None and result.status == "recorded":
        return result.as_dict() | out, True
    target = await _resolved_onto(store, entry_id)
    if target != (channel, order_id):
        where = f"{target[0]}/{target[1]}" if target else "another order"
        raise SuspenseClosed(
            f"this suspense entry is already resolved onto {where}",
            suspense_id=str(entry_id),
            channel=target[0] if target else None,
            order_id=target[1] if target else None,
        )
    answer = result.as_dict() if result is not None else {"status": "duplicate"}
    return answer | out, False


async def _resolved_onto(store: LedgerStore, entry_id: UUID) -> tuple[str, str] | None:
    """``(channel, order_id)`` an entry was resolved onto, from its ``suspense.resolved``."""
    history = await store.stream_history(entry_id)
    resolved = [e["data"] for e in history if e["type"] == "suspense.resolved"]
    if not resolved:
        return None
    return str(resolved[-1].get("channel")), str(resolved[-1].get("order_id"))


async def apply_suspended(
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


def stored_event(entry: dict[str, Any]) -> dict[str, Any]:
    """The canonical event a suspense entry keeps, as a dict."""
    event = entry["event"]
    # asyncpg hands jsonb back as text unless a codec is set on the pool
    value = orjson.loads(event) if isinstance(event, str | bytes) else event
    if not isinstance(value, dict):  # pragma: no cover - only dicts are ever stored
        raise ValidationError("the suspended event is not an object")
    return value
