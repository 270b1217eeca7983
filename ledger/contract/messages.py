"""The published contract of one recorded event: its JSON shape, hash and NATS subject.

The same object is returned by ``GET /v1/events``, published on the stream
``LEDGER`` and written by ``omniledger export``::

    {"position": 12, "stream_id": "<uuid>", "version": 3,
     "type": "payment.captured",
     "data": {"seller_id": "s1", "order_id": "o1", "channel": "qris",
              "amount": "150000.00", "fee": "1050.00", "currency": "IDR",
              "gateway": "midtrans", "gateway_ref": "..."},
     "occurred_at": "2026-11-30T17:30:00+00:00",
     "recorded_at": "2026-11-30T17:30:01.123456Z",
     "hash": "<64 hex>", "prev_hash": "<64 hex>"}

``data`` by type (amounts are strings with the currency's digits):

- ``seller.registered``: seller_id, name, district, nib, channels
- ``seller.curated``: seller_id, status, certifications
- ``order.placed``: seller_id, order_id, channel, amount, currency
- ``order.cancelled``: seller_id, order_id, channel, amount, currency
- ``order.status_noted``: seller_id, order_id, channel, source, status
- ``payment.captured``: seller_id, order_id, channel, amount, fee, currency, gateway, gateway_ref
- ``payment.failed``: seller_id, order_id, channel, gateway, gateway_ref, reason
- ``refund.issued``: seller_id, order_id, channel, amount, currency, gateway, gateway_ref
- ``payout.sent``: seller_id, amount, currency, reference
- ``suspense.recorded``: suspense_id, gateway, reason, event (the canonical event that
  could not be applied), amount, currency
- ``suspense.resolved``: suspense_id, channel, order_id (the applied fact is the
  event before it in the same transaction, on the order's stream)
- ``reconciliation.recorded``: check, report_sha256, gateway, date, summary, findings

Every type may also carry ``idempotency_key`` and ``metadata``.

The hash chain (DESIGN rule 6): ``hash = SHA-256(prev_hash || canonical)``
where ``prev_hash`` is taken as its 32 bytes (the hex decoded), and
``canonical`` is the object above without ``hash`` and ``prev_hash`` (the
seven fields of :func:`hashed_message`) as compact JSON in UTF-8: keys sorted
at every level, no spaces (separators ``,`` and ``:``), non-ASCII text written
as itself, not escaped. With the standard library that is::

    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False).encode("utf-8")
    hash = hashlib.sha256(bytes.fromhex(prev_hash) + canonical).hexdigest()

The first event's ``prev_hash`` is 64 zeros. ``tests/unit/contract/test_golden_vector.py``
pins this with fixed messages and their hashes.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from ledger.domain.money import format_minor

__all__ = [
    "GENESIS_HASH",
    "SUBJECT_PREFIX",
    "canonical_bytes",
    "chain_hash",
    "event_data",
    "format_instant",
    "hash_fields",
    "hashed_message",
    "subject_for",
]

GENESIS_HASH: Final[str] = "0" * 64
SUBJECT_PREFIX: Final[str] = "ledger"


@functools.lru_cache(maxsize=4096)
def format_instant(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: the one spelling of ``recorded_at``.

    Cached: every event of one group commit shares its ``recorded_at``, so
    readers of the log (relay, verify, export) format each instant once.
    """
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hashed_message(
    position: int,
    stream_id: str,
    version: int,
    event_type: str,
    data: dict[str, Any],
    occurred_at: str,
    recorded_at: str,
) -> dict[str, Any]:
    """What is hashed of an event: the one place that builds it.

    The append hashes what it writes with it, the verifier what it reads back
    from each stored row, and every reader of the log builds the published
    message from it (adding ``hash`` and ``prev_hash``), so the three cannot
    differ in a field. Positional arguments: the verifier calls this for every
    row of the log.
    """
    return {
        "position": position,
        "stream_id": stream_id,
        "version": version,
        "type": event_type,
        "data": data,
        "occurred_at": occurred_at,
        "recorded_at": recorded_at,
    }


def _hashed_of(message: dict[str, Any]) -> dict[str, Any]:
    """The hashed part of a published message (``KeyError`` if a field is missing)."""
    return hashed_message(
        message["position"],
        message["stream_id"],
        message["version"],
        message["type"],
        message["data"],
        message["occurred_at"],
        message["recorded_at"],
    )


def canonical_bytes(message: dict[str, Any]) -> bytes:
    """The bytes that are hashed: every field but the two hashes, keys sorted."""
    return orjson.dumps(_hashed_of(message), option=orjson.OPT_SORT_KEYS)


def chain_hash(prev_hash: str, message: dict[str, Any]) -> str:
    """SHA-256 over the previous hash's bytes followed by the canonical bytes, as hex."""
    return hash_fields(prev_hash, _hashed_of(message))


def hash_fields(prev_hash: str, hashed: dict[str, Any]) -> str:
    """:func:`chain_hash` of a :func:`hashed_message` (orjson's compact output with
    sorted keys is exactly the canonical JSON of the module's docstring)."""
    digest = hashlib.sha256(bytes.fromhex(prev_hash))
    digest.update(orjson.dumps(hashed, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def subject_for(event_type: str, prefix: str = SUBJECT_PREFIX) -> str:
    """``payment.captured`` -> ``ledger.payment.captured``.

    The prefix is configurable so that test sessions can own non-overlapping
    subjects on a shared NATS server (JetStream refuses overlapping streams).
    """
    return f"{prefix}.{event_type}"


_NOT_DATA: Final = frozenset({"timestamp", "originator_topic", "occurred_at"})
#: What each field of a stored state is in ``data``: ``None`` for the library's
#: bookkeeping (left out), the short name of an amount ("amount_minor" ->
#: "amount"), else the name itself; filled as names are first seen (one
#: look-up a field: this is the hot path of every reader of the log)
_DATA_NAMES: dict[str, str | None] = dict.fromkeys(_NOT_DATA)


def event_data(state: dict[str, Any]) -> dict[str, Any]:
    """The contract's ``data`` of an event from its stored state.

    Amounts are held as ``*_minor`` integers and published as strings with
    the currency's digits; the library's bookkeeping fields are left out.
    """
    currency = state.get("currency", "IDR")
    data: dict[str, Any] = {}
    for name, value in state.items():
        try:
            short = _DATA_NAMES[name]
        except KeyError:
            short = _DATA_NAMES[name] = name[:-6] if name.endswith("_minor") else name
        if value is None or short is None:
            continue
        if short == name:
            data[name] = value
        elif type(value) is int:
            data[short] = format_minor(value, currency)
        else:
            data[name] = value
    return data
