"""The fast state encoder writes what the library's own mapper writes, for every event type."""

from __future__ import annotations

import orjson

from ledger.app.repository import _encode_state, _make_mapper
from ledger.domain.orders import Order
from ledger.domain.sellers import Seller
from ledger.domain.suspense import Reconciliation, SuspenseEntry


def _all_events() -> list[object]:
    seller = Seller(
        seller_id="s1", name="Toko Ümi ☕", district="Tamalate", nib=None,
        channels={"shopee": "727720655"}, occurred_at="2026-11-30T10:00:00+08:00",
    )  # fmt: skip
    seller.curate(status="verified", certifications=[{"kind": "halal", "number": "ID-1"}],
                  occurred_at="2026-11-30T10:00:00+08:00")  # fmt: skip
    seller.pay_out(amount_minor=5, currency="IDR", reference="r", available_minor=10,
                   occurred_at="2026-11-30T10:00:00+08:00", idempotency_key="k",
                   metadata=None)  # fmt: skip
    order = Order(seller_id="s1", order_id="o1", channel="qris", amount_minor=100, currency="IDR",
                  occurred_at="2026-11-30T10:00:00.123456+08:00", idempotency_key="k1",
                  metadata={"note": "pesanan \"khusus\"", "n": [1, 2.5, None]})  # fmt: skip
    order.capture(amount_minor=60, fee_minor=1, currency="IDR", gateway="midtrans", gateway_ref="g",
                  occurred_at="2026-11-30T10:00:00Z", idempotency_key="k2")  # fmt: skip
    order.refund(amount_minor=10, currency="IDR", gateway="midtrans", gateway_ref="r",
                 occurred_at="2026-11-30T10:00:00Z", idempotency_key="k3")  # fmt: skip
    order.note_status(source="shopee", status="SHIPPED", occurred_at="2026-11-30T10:00:00Z",
                      idempotency_key="k4")  # fmt: skip
    order.fail_payment(gateway="x", gateway_ref="y", reason=None,
                       occurred_at="2026-11-30T10:00:00Z", idempotency_key="k5")  # fmt: skip
    other = Order(seller_id="s1", order_id="o2", channel="pos", amount_minor=100, currency="IDR",
                  occurred_at="2026-11-30T10:00:00Z", idempotency_key="k6",
                  metadata=None)  # fmt: skip
    other.cancel(occurred_at="2026-11-30T10:00:00Z", idempotency_key="k7")
    entry = SuspenseEntry(suspense_id="x", idempotency_key="k8", gateway="midtrans",
                          reason="unknown_order", event={"amount": "1.00"}, amount_minor=100,
                          currency="IDR", occurred_at="2026-11-30T10:00:00Z")  # fmt: skip
    entry.resolve(channel="qris", order_id="o1", occurred_at="2026-11-30T10:00:00Z")
    recon = Reconciliation(check="c", report_sha256="r", gateway="midtrans", date="2026-11-30",
                           summary={"matched": 1}, findings={"matched": []},
                           occurred_at="2026-11-30T10:00:00Z")  # fmt: skip
    events: list[object] = []
    for aggregate in (seller, order, other, entry, recon):
        events.extend(aggregate.collect_events())
    return events


def test_fast_encoding_equals_the_library_mapper_for_every_event_type():
    mapper = _make_mapper()
    events = _all_events()
    assert len({type(e) for e in events}) == 12
    for domain_event in events:
        state = dict(vars(domain_event))
        del state["originator_id"], state["originator_version"]
        library = mapper.to_stored_event(domain_event).state
        assert orjson.loads(_encode_state(state)) == orjson.loads(library)
        # and the library decodes ours back into an equal event
        from eventsourcing.persistence import StoredEvent

        ours = StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=mapper.to_stored_event(domain_event).topic,
            state=_encode_state(state),
        )
        assert vars(mapper.to_domain_event(ours)) == vars(domain_event)
