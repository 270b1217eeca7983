"""A new order written without building its aggregate is what the library would write,
and reads back as the aggregate the library would build."""

from __future__ import annotations

from typing import Any

import orjson
from eventsourcing.persistence import StoredEvent

from ledger.app.repository import Repository, _make_mapper, created, new_events
from ledger.domain.orders import Order, order_stream_id
from ledger.store.log import StoredRow

_FIELDS: dict[str, Any] = {
    "seller_id": "s1", "order_id": "o1", "channel": "qris", "amount_minor": 15_000_000,
    "currency": "IDR", "occurred_at": "2026-11-30T10:00:00.123456+08:00",
    "idempotency_key": "k1", "metadata": {"note": "pesanan \"khusus\" ☕", "n": [1, 2.5, None]},
}  # fmt: skip


def _state_without_time(state: bytes) -> list[tuple[str, Any]]:
    decoded = orjson.loads(state)
    assert decoded.pop("timestamp")["_type_"] == "datetime_iso"
    return list(decoded.items())  # in order: the stored bytes are the same but for the time


def test_a_created_order_is_stored_as_the_library_stores_a_new_order():
    stream_id = order_stream_id("qris", "o1")
    [library] = new_events([Order(**_FIELDS)])
    _, ours = created(Order.Placed, Order, stream_id, **_FIELDS)  # type: ignore[attr-defined]
    assert (ours.stream_id, ours.version, ours.topic, ours.type) == (
        library.stream_id, library.version, library.topic, library.type,
    )  # fmt: skip
    assert (ours.data, ours.occurred_at, ours.seller_id) == (
        library.data, library.occurred_at, library.seller_id,
    )  # fmt: skip
    assert _state_without_time(ours.state) == _state_without_time(library.state)


def test_a_created_order_reads_back_as_the_aggregate_the_library_builds():
    stream_id = order_stream_id("qris", "o1")
    holder, event = created(Order.Placed, Order, stream_id, **_FIELDS)  # type: ignore[attr-defined]
    made = holder.aggregate()
    replayed = _replayer().replay([StoredRow(stream_id, 1, event.topic, event.state)])
    assert vars(made) == vars(replayed)
    built = Order(**_FIELDS)
    built.collect_events()
    times = ("_created_on", "_modified_on")
    assert {k: v for k, v in vars(made).items() if k not in times} == {
        k: v for k, v in vars(built).items() if k not in times
    }
    # and it decides as one: a capture on it is the library's event, version 2
    made.capture(amount_minor=1, fee_minor=0, currency="IDR", gateway="g", gateway_ref="r",
                 occurred_at="2026-11-30T10:00:00Z", idempotency_key="k2")  # fmt: skip
    [captured] = new_events([made])
    assert (captured.version, captured.type) == (2, "payment.captured")
    row = StoredEvent(
        originator_id=stream_id, originator_version=1, topic=event.topic, state=event.state
    )
    stored = _make_mapper().to_domain_event(row)
    assert stored.originator_topic == "ledger.domain.orders:Order"  # type: ignore[attr-defined]


def _replayer() -> Repository:
    repository = Repository.__new__(Repository)
    repository._mapper = _make_mapper()
    return repository
