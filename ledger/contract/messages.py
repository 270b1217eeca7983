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
where ``canonical`` is the sorted-key compact JSON of the object above without
``hash`` and ``prev_hash``; the first event's ``prev_hash`` is 64 zeros.
"""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime
from typing import Any, Final

import orjson

__all__ = [
    "GENESIS_HASH",
    "SUBJECT_PREFIX",
    "canonical_bytes",
    "chain_hash",
    "format_instant",
    "hash_fields",
    "subject_for",
]

GENESIS_HASH: Final[str] = "0" * 64
SUBJECT_PREFIX: Final[str] = "ledger"

_HASHED_FIELDS: Final = (
    "position",
    "stream_id",
    "version",
    "type",
    "data",
    "occurred_at",
    "recorded_at",
)


@functools.lru_cache(maxsize=4096)
def format_instant(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: the one spelling of ``recorded_at``.

    Cached: every event of one group commit shares its ``recorded_at``, so
    readers of the log (relay, verify, export) format each instant once.
    """
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def canonical_bytes(message: dict[str, Any]) -> bytes:
    """The bytes that are hashed: every field but the two hashes, keys sorted."""
    return orjson.dumps(
        {name: message[name] for name in _HASHED_FIELDS}, option=orjson.OPT_SORT_KEYS
    )


def chain_hash(prev_hash: str, message: dict[str, Any]) -> str:
    """SHA-256 over the previous hash's bytes followed by the canonical bytes, as hex."""
    return hash_fields(prev_hash, {name: message[name] for name in _HASHED_FIELDS})


def hash_fields(prev_hash: str, hashed: dict[str, Any]) -> str:
    """:func:`chain_hash` for a message already cut down to its hashed fields
    (the verifier builds exactly those from each stored row)."""
    digest = hashlib.sha256(bytes.fromhex(prev_hash))
    digest.update(orjson.dumps(hashed, option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()


def subject_for(event_type: str, prefix: str = SUBJECT_PREFIX) -> str:
    """``payment.captured`` -> ``ledger.payment.captured``.

    The prefix is configurable so that test sessions can own non-overlapping
    subjects on a shared NATS server (JetStream refuses overlapping streams).
    """
    return f"{prefix}.{event_type}"
