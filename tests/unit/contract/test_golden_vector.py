"""The hash chain pinned by a golden vector (DESIGN rule 6, ``ledger/contract/messages.py``).

Three fixed messages, chained from the genesis: ASCII text, non-ASCII text
(Indonesian names, an emoji outside the BMP, U+2028), amounts as strings,
nested metadata with keys out of order, and characters JSON must escape.
Each expected hash is written twice: recomputed here with ``hashlib`` and
``json`` from the documented formula, and as a literal hex string, so a change
to the formula fails even if the code and this file's formula change together.

Every place that builds what is hashed is held to the literals: the contract's
``chain_hash``, the append laying a batch out (``ledger.store.append``), a
reader of the log (``message_from_row``) and the verifier's per-row check.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest

from ledger.audit.verify import _RangeCheck
from ledger.contract.messages import (
    GENESIS_HASH,
    canonical_bytes,
    chain_hash,
    hash_fields,
    hashed_message,
)
from ledger.store.append import _Batch
from ledger.store.log import message_from_row
from ledger.store.units import NewEvent

RECORDED_AT = "2026-11-30T09:30:01.123456Z"
STREAM = "6f1c2d3e-4b5a-5c6d-8e7f-0a1b2c3d4e5f"

#: The seven hashed fields of each message, in position order.
MESSAGES: list[dict[str, Any]] = [
    {
        "position": 1,
        "stream_id": STREAM,
        "version": 1,
        "type": "seller.registered",
        "data": {"seller_id": "s1", "name": "Toko Ani", "district": "Tamalate"},
        "occurred_at": "2026-11-30T17:30:00+08:00",
        "recorded_at": RECORDED_AT,
    },
    {
        "position": 2,
        "stream_id": STREAM,
        "version": 2,
        "type": "payment.captured",
        "data": {
            "seller_id": "s1",
            "order_id": "INV/2026/11/0001",
            "channel": "qris",
            "amount": "150000.00",
            "fee": "1050.00",
            "currency": "IDR",
            "gateway": "midtrans",
            "gateway_ref": "é-ref",
            "metadata": {
                "pembeli": "Bu Siti Nurhaliza",
                "catatan": "kue lapis 🍰, jangan dibalik\u2028terima kasih",
                "z": {"b": [3, 2, 1], "a": {"y": True, "x": None}},
            },
        },
        "occurred_at": "2026-11-30T17:31:00+08:00",
        "recorded_at": RECORDED_AT,
    },
    {
        "position": 3,
        "stream_id": STREAM,
        "version": 3,
        "type": "refund.issued",
        "data": {
            "seller_id": "s1",
            "order_id": "INV/2026/11/0001",
            "channel": "qris",
            "amount": "0.01",
            "currency": "IDR",
            "gateway": "midtrans",
            "gateway_ref": 'q"uote\\back\nslash\t\x01',
            "idempotency_key": "r-1",
        },
        "occurred_at": "2026-12-01T00:00:00+00:00",
        "recorded_at": RECORDED_AT,
    },
]

#: SHA-256 of each message chained on the one before (the first on 64 zeros).
GOLDEN_HASHES = [
    "86d98962a0c651ebfb2bf12e48d3abf5789e3b6b77479e7b05cad89486abe8bb",
    "b34bbe329b52e7125a26d5f365b5ffc22de3c23bf89e1d720c2daeb92201ca3a",
    "96a0ca5b640d0819324508a08adfc324be98f22f290dc44fc1a26e5bfc75d0da",
]


def stdlib_hash(prev_hash: str, hashed: dict[str, Any]) -> str:
    """The documented formula, with the standard library only."""
    canonical = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical.encode("utf-8")).hexdigest()


def chained(hash_of: Any) -> list[str]:
    hashes, prev = [], GENESIS_HASH
    for message in MESSAGES:
        prev = hash_of(prev, message)
        hashes.append(prev)
    return hashes


def test_the_documented_formula_gives_the_pinned_hashes() -> None:
    assert chained(stdlib_hash) == GOLDEN_HASHES


def test_the_contract_gives_the_pinned_hashes() -> None:
    assert chained(chain_hash) == GOLDEN_HASHES
    published = [
        {**m, "hash": h, "prev_hash": p}
        for m, h, p in zip(MESSAGES, GOLDEN_HASHES, [GENESIS_HASH, *GOLDEN_HASHES], strict=False)
    ]
    # the published message hashes the same as its seven fields
    assert chained(chain_hash) == [chain_hash(m["prev_hash"], m) for m in published]


@pytest.mark.parametrize("index", range(len(MESSAGES)))
def test_canonical_bytes_are_the_documented_json(index: int) -> None:
    message = MESSAGES[index]
    expected = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_bytes({**message, "hash": "x", "prev_hash": "y"}) == expected.encode()


def test_hashed_message_is_the_seven_fields() -> None:
    m = MESSAGES[1]
    built = hashed_message(
        m["position"], m["stream_id"], m["version"], m["type"], m["data"],
        m["occurred_at"], m["recorded_at"],
    )  # fmt: skip
    assert built == m
    assert hash_fields(GENESIS_HASH, built) == stdlib_hash(GENESIS_HASH, m)


# -- every builder of the hashed message, held to the literals ---------------------------------


def _state(message: dict[str, Any]) -> bytes:
    """The stored state the service would write for ``message``: amounts in minor units."""
    state: dict[str, Any] = {"occurred_at": message["occurred_at"], "timestamp": "t"}
    for name, value in message["data"].items():
        if name in ("amount", "fee"):
            state[f"{name}_minor"] = int(value.replace(".", ""))  # IDR: 2 digits here
        else:
            state[name] = value
    return json.dumps(state).encode()


def test_the_append_hashes_what_it_writes_to_the_pinned_hashes() -> None:
    recorded = datetime.fromisoformat(RECORDED_AT.replace("Z", "+00:00"))
    batch = _Batch(0, GENESIS_HASH, recorded)
    for m in MESSAGES:
        event = NewEvent(
            UUID(m["stream_id"]), m["version"], "topic", b"", m["type"], m["data"],
            m["occurred_at"],
        )  # fmt: skip
        assert batch._add_event(event) == m["position"]
    # (a row: stream, version, topic, state, type, occurred_at, hash, prev_hash, seller)
    assert [row[6] for row in batch.events] == GOLDEN_HASHES
    assert [row[7] for row in batch.events] == [GENESIS_HASH, *GOLDEN_HASHES[:-1]]
    assert batch.prev_hash == GOLDEN_HASHES[-1]


def _rows() -> list[dict[str, Any]]:
    recorded = datetime.fromisoformat(RECORDED_AT.replace("Z", "+00:00"))
    prevs = [GENESIS_HASH, *GOLDEN_HASHES[:-1]]
    return [
        {
            "notification_id": m["position"],
            "originator_id": UUID(m["stream_id"]),
            "originator_version": m["version"],
            "type": m["type"],
            "state": _state(m),
            "recorded_at": recorded,
            "hash": h,
            "prev_hash": p,
        }
        for m, h, p in zip(MESSAGES, GOLDEN_HASHES, prevs, strict=True)
    ]


def test_a_reader_of_the_log_rebuilds_the_pinned_messages() -> None:
    for row, m, h in zip(_rows(), MESSAGES, GOLDEN_HASHES, strict=True):
        message = message_from_row(row)
        assert {k: v for k, v in message.items() if k not in ("hash", "prev_hash")} == m
        assert chain_hash(message["prev_hash"], message) == h


def test_the_verifier_recomputes_the_pinned_hashes() -> None:
    topics = {
        "seller.registered": "ledger.domain.sellers:Seller.Registered",
        "payment.captured": "ledger.domain.orders:Order.PaymentCaptured",
        "refund.issued": "ledger.domain.orders:Order.RefundIssued",
    }
    rows = [
        (
            r["notification_id"], str(r["originator_id"]), r["originator_version"], r["type"],
            topics[r["type"]], r["state"], datetime.fromisoformat(m["occurred_at"]),
            r["recorded_at"], r["hash"], r["prev_hash"],
        )
        for r, m in zip(_rows(), MESSAGES, strict=True)
    ]  # fmt: skip
    check = _RangeCheck(0)
    assert check.feed(rows), check.reason
    assert check.running == GOLDEN_HASHES[-1]
    # one hashed byte changed is named at its position
    changed = list(rows[1])
    changed[5] = changed[5].replace(b"Siti", b"Sita")
    check = _RangeCheck(0)
    assert not check.feed([rows[0], tuple(changed), rows[2]])
    assert (check.bad_position, check.reason) == (2, "hash does not match the stored content")
