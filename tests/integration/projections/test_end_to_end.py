"""From the real ledger through the real relay to the read models.

The ledger's write side keeps each seller's account (``seller_accounts``) to
check payouts; the balances projection, fed only by the stream, must end
with the same numbers, and the recaps with the folds over the log itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from ledger.app.ledger import Ledger
from ledger.audit.balance_sums import balance_sums
from ledger.domain.commands import parse_command
from ledger.domain.errors import LedgerError
from ledger.domain.money import format_minor, parse_amount
from ledger.relay.relay import Relay, RelayConfig
from ledger.store import LedgerStore
from projections import catalog, reads, run_projections
from tests.integration.projections.harness import Stream, stored_position, until


@pytest.fixture
async def ledger(pool: asyncpg.Pool) -> AsyncIterator[Ledger]:
    store = LedgerStore(pool)
    await store.migrate()
    service = Ledger(store)
    service.start()
    yield service
    await service.stop()


async def record_history(ledger: Ledger, sellers: list[str], commands: int) -> int:
    """A random history through the ledger's rules; returns how many were recorded."""
    rng = random.Random(17)
    for i, s in enumerate(sellers):
        await ledger.register_seller(
            seller_id=s,
            name=f"Toko {s}",
            district=["Panakkukang", "Tamalate", None][i % 3],
            nib=None,
            channels={},
            occurred_at="2026-11-30T00:00:00+08:00",
            fingerprint=s.encode(),
        )
    orders: list[tuple[str, str, str, int]] = []
    start = datetime(2026, 11, 29, tzinfo=UTC)
    recorded = 0
    for n in range(commands):
        at = (start + timedelta(minutes=rng.randrange(3 * 24 * 60))).isoformat()
        roll = rng.random()
        raw: dict[str, Any]
        if roll < 0.4 or not orders:
            s, ch = rng.choice(sellers), rng.choice(["qris", "shopee", "pos"])
            amount = rng.randrange(1, 500) * 1000
            raw = {
                "type": "order.placed",
                "seller_id": s,
                "order_id": f"o{n}",
                "channel": ch,
                "amount": str(amount),
            }
            orders.append((s, f"o{n}", ch, amount))
        else:
            s, oid, ch, amount = rng.choice(orders)
            if roll < 0.75:
                part = amount if rng.random() < 0.7 else amount // 2
                raw = {
                    "type": "payment.captured",
                    "order_id": oid,
                    "channel": ch,
                    "amount": str(part),
                    "fee": str(part * 7 // 1000),
                    "gateway": "midtrans",
                    "gateway_ref": f"g{n}",
                }
            elif roll < 0.85:
                raw = {
                    "type": "refund.issued",
                    "order_id": oid,
                    "channel": ch,
                    "amount": str(rng.randrange(1, amount + 1)),
                    "gateway": "midtrans",
                    "gateway_ref": f"r{n}",
                }
            elif roll < 0.93:
                raw = {"type": "order.cancelled", "order_id": oid, "channel": ch}
            else:
                raw = {
                    "type": "payout.sent",
                    "seller_id": s,
                    "amount": str(rng.randrange(1, 200_000)),
                    "reference": f"p{n}",
                }
        raw |= {"idempotency_key": f"k{n}", "occurred_at": at}
        with contextlib.suppress(LedgerError):  # refused by a rule: leaves no trace
            await ledger.record(parse_command(raw))
            recorded += 1
    return recorded


async def test_projections_fed_by_the_relay_agree_with_the_ledger(
    stream: Stream, pool: asyncpg.Pool, ledger: Ledger, pg_dsn: str, schema_name: str, nats_url: str
) -> None:
    sellers = [f"s{i}" for i in range(6)]
    recorded = await record_history(ledger, sellers, 400)
    assert recorded > 200
    relay = Relay(
        pool, RelayConfig(nats_url=nats_url, stream_name=stream.name, subject_prefix=stream.prefix)
    )
    stop = asyncio.Event()
    search_path = f"options=-csearch_path%3D{schema_name}"
    tasks = [
        asyncio.create_task(relay.run()),
        asyncio.create_task(
            run_projections(
                stop=stop,
                database_url=f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}{search_path}",
                nats_url=nats_url,
                stream=stream.name,
                subject_prefix=stream.prefix,
            )
        ),
    ]
    store = LedgerStore(pool)
    try:
        head, _ = await store.head()

        async def caught_up() -> bool:
            try:
                return all(
                    [await stored_position(pool, n) == head for n in catalog.PROJECTION_NAMES]
                )
            except asyncpg.UndefinedTableError:
                return False

        await until(caught_up, timeout_s=30)
    finally:
        stop.set()
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for s in sellers:
        account = await store.account(s, "IDR")
        balance = await reads.seller_balance(pool, s)
        assert account is not None and balance is not None
        minor = {
            k: parse_amount(v, "IDR", allow_zero=True)
            for k, v in balance.items()
            if k.endswith(("total", "pending"))
        }
        assert minor == {
            "pending": account["pending_minor"],
            "captured_total": account["captured_minor"],
            "refunded_total": account["refunded_minor"],
            "fees_total": account["fees_minor"],
            "paid_out_total": account["paid_out_minor"],
        }, s
        assert balance["as_of_position"] == head
    accounts = [await store.account(s, "IDR") or {} for s in sellers]
    assert all(a.get("captured_minor") for a in accounts)  # the history moved money
    # the balances once more, summed in SQL from the log (no fold, no money module)
    sums_by_seller = await balance_sums(pool, head)
    for s in sellers:
        account = await store.account(s, "IDR")
        assert account is not None
        log_sums = sums_by_seller[(s, "IDR")]
        assert {k: log_sums[k] for k in _TOTALS} == {k: account[v] for k, v in _TOTALS.items()}
    # the recaps against sums kept here by plain counting over the log, not the
    # projection's fold (issue 11: the expectation computed by the production fold
    # could not fail on a wrong fold)
    expected: dict[tuple[str, str, str], list[int]] = {}
    makassar = ZoneInfo("Asia/Makassar")
    # per type: the column of its count, and of its amount; the fees in column 6
    columns = {"order.placed": (0, 3), "payment.captured": (1, 4), "refund.issued": (2, 5)}
    async for m in store.iter_log():
        if m["type"] not in columns:
            continue
        d = m["data"]
        day = datetime.fromisoformat(m["occurred_at"]).astimezone(makassar).date().isoformat()
        sums = expected.setdefault((d["seller_id"], day, d["channel"]), [0] * 7)
        count, amount = columns[m["type"]]
        sums[count] += 1
        sums[amount] += parse_amount(d["amount"], "IDR")
        if m["type"] == "payment.captured":
            sums[6] += parse_amount(d.get("fee") or "0", "IDR", allow_zero=True)
    assert expected
    for (seller, day, channel), figures in expected.items():
        orders, payments, refunds, value, captured, refunded, fees = figures
        rows = await reads.seller_recaps(pool, seller, day, day)
        row = next(r for r in rows if r["channel"] == channel)
        money = {k: format_minor(v, "IDR") for k, v in (
            ("order_value", value), ("captured", captured), ("refunded", refunded),
            ("fees", fees), ("net", captured - refunded - fees),
        )}  # fmt: skip
        assert row == {"date": day, "channel": channel, "currency": "IDR", "orders": orders,
                       "payments": payments, "refunds": refunds, **money}  # fmt: skip


#: the balance's figures by the write side's column names
_TOTALS = {
    "pending": "pending_minor",
    "captured_total": "captured_minor",
    "refunded_total": "refunded_minor",
    "fees_total": "fees_minor",
    "paid_out_total": "paid_out_minor",
}
