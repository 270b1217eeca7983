"""The library's own recorder and Application read what the service wrote (DESIGN rule 2)."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

from eventsourcing.application import Application

from ledger.domain.orders import Order, order_stream_id


class OmniLedger(Application):
    """Named so the library looks for the table ``omniledger_events``."""


def _library_env(dsn: str) -> dict[str, str]:
    parts = urlsplit(dsn)
    host = parts.hostname or parse_qs(parts.query).get("host", [""])[0]
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"),
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(parts.port or parse_qs(parts.query).get("port", ["5432"])[0]),
        "POSTGRES_USER": parts.username or "postgres",
        "POSTGRES_PASSWORD": parts.password or "",
        "CREATE_TABLE": "false",
    }


async def test_library_application_replays_an_order_written_by_the_service(api, uid, pg_dsn):
    seller, order_id = uid("s"), uid("o")
    await api.seller(seller)
    await api.place(seller, order_id, "250000")
    status, _ = await api.capture(order_id, "100000", fee="1500")
    assert status == 201
    status, _ = await api.event(
        type="refund.issued",
        order_id=order_id,
        channel="qris",
        amount="40000.00",
        gateway="midtrans",
        gateway_ref=uid("rf"),
    )
    assert status == 201

    def read_with_library() -> tuple[Order, list[int]]:
        app = OmniLedger(env=_library_env(pg_dsn))
        try:
            order = app.repository.get(order_stream_id("qris", order_id))
            notifications = app.recorder.select_notifications(start=1, limit=1_000_000)
            return order, [n.id for n in notifications]
        finally:
            app.close()

    order, ids = await asyncio.to_thread(read_with_library)
    assert isinstance(order, Order)
    assert (order.amount_minor, order.captured_minor, order.fees_minor, order.refunded_minor) == (
        25_000_000,
        10_000_000,
        150_000,
        4_000_000,
    )
    assert order.version == 3
    assert ids == list(range(1, len(ids) + 1)), "the library sees gap-free notification ids"
