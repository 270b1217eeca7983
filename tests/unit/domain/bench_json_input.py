"""Cost of the duplicate-key check on the write path: a script, not a test.

    .venv/bin/python -m tests.unit.domain.bench_json_input

Times, per request body, plain ``orjson.loads`` (what ``read_json`` did
before), ``loads_unique`` (what it does now: orjson plus the colon-count
proof), and the exact stdlib parse with ``object_pairs_hook`` (the slow path,
taken only for bodies with a backslash or unequal counts), for a typical
~400-byte ``payment.captured`` event and a batch of 100 of them. Best of 7
runs, so other load on the machine inflates the numbers less.
"""

from __future__ import annotations

import json
import timeit
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from ledger.domain.json_input import loads_unique, unique_pairs


def event() -> dict[str, Any]:
    return {
        "type": "payment.captured",
        "idempotency_key": "midtrans:capture:" + uuid.uuid4().hex,
        "occurred_at": "2026-11-30T10:00:00+08:00",
        "order_id": "INV-2026-11-30-" + uuid.uuid4().hex[:8],
        "channel": "qris",
        "amount": "100000",
        "fee": "700",
        "currency": "IDR",
        "gateway": "midtrans",
        "gateway_ref": str(uuid.uuid4()),
        "metadata": {"payment_type": "qris", "issuer": "gopay", "note": "order from the stall"},
    }


def per_call_us(function: Callable[[bytes], Any], raw: bytes, number: int) -> float:
    best = min(timeit.repeat(lambda: function(raw), number=number, repeat=7))
    return best / number * 1e6


def main() -> None:
    single = orjson.dumps(event())
    batch = orjson.dumps({"events": [event() for _ in range(100)]})
    escaped = json.dumps(event() | {"metadata": {"note": "Toko Daeng R\u00e9"}}).encode()
    ways: dict[str, Callable[[bytes], Any]] = {
        "orjson.loads (before)": orjson.loads,
        "loads_unique (now)": loads_unique,
        "stdlib + object_pairs_hook": lambda raw: json.loads(raw, object_pairs_hook=unique_pairs),
    }
    for name, raw, number in (
        (f"one event, {len(single)} B", single, 20_000),
        (f"100-event batch, {len(batch)} B", batch, 300),
        (f"one event with a \\u escape (slow path), {len(escaped)} B", escaped, 20_000),
    ):
        print(name)
        base = per_call_us(orjson.loads, raw, number)
        for way, function in ways.items():
            cost = per_call_us(function, raw, number)
            print(f"  {way:28} {cost:8.2f} us  ({cost - base:+.2f} us)")


if __name__ == "__main__":
    main()
