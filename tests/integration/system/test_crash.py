"""Issue 3, the whole service as a real process, killed mid-burst (DESIGN rules 1, 4, 6, 7).

``omniledger up`` runs against the real PostgreSQL and NATS; many concurrent
HTTP clients post a burst of orders, payments, refunds, cancellations,
payouts and batches; once some hundreds are acknowledged the process group
gets SIGKILL (no clean-up runs). Every answer is recorded. After a restart:

- every acknowledged (2xx) event is in the log at the position it was given;
  no rejected (422) event left a trace; the log is 1..N without gaps and
  ``omniledger verify`` finds the hash chain intact;
- the stream holds exactly the log: sequence == position == ``Nats-Msg-Id``,
  subject ``<prefix>.<type>``, body equal to the ``GET /v1/events`` object;
- once ``GET /v1/projections`` shows lag 0, every seller's balance from the
  projection equals ``omniledger replay``, the write side's own account and
  a fold of what the clients sent; ``omniledger check-projections`` exits 0;
- re-sending acknowledged events (and committed ones whose answer was lost
  in the crash) returns ``duplicate`` with the same position and records
  nothing.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import orjson

from tests.integration.system.conftest import (
    CliRunner,
    Http,
    Service,
    command_lines,
    money,
    stream_messages,
)

WORKERS = 24
SELLERS = 8
KILL_AFTER_ACKS = 1500
AT = "2026-11-30T10:00:00+08:00"
FAR_FUTURE = "2100-01-01T00:00:00Z"


def fmt(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


@dataclass
class Sent:
    """One event the clients sent, and what became of it."""

    key: str
    body: dict[str, Any]
    batch: str | None = None  # key of the batch's first event, if sent in a batch
    outcome: str = "pending"  # acked | rejected | unknown
    answer: dict[str, Any] | None = None


@dataclass
class Burst:
    session: aiohttp.ClientSession
    url: str
    headers: dict[str, str]
    sellers: list[str]
    tag: str
    sent: list[Sent] = field(default_factory=list)
    batches: dict[str, list[Sent]] = field(default_factory=dict)
    acked: int = 0
    enough: asyncio.Event = field(default_factory=asyncio.Event)

    async def _post(self, body: Any) -> tuple[int, Any]:
        async with self.session.post(
            f"{self.url}/v1/events", data=orjson.dumps(body),
            headers={"Content-Type": "application/json", **self.headers},
        ) as r:  # fmt: skip
            return r.status, orjson.loads(await r.read())

    def _ack(self, s: Sent, answer: dict[str, Any]) -> None:
        s.outcome, s.answer = "acked", answer
        self.acked += 1
        if self.acked >= KILL_AFTER_ACKS:
            self.enough.set()

    async def one(self, **fields: Any) -> Sent | None:
        """Posts one event; ``None`` once the service is gone (the worker stops)."""
        body = {"idempotency_key": uuid.uuid4().hex, "occurred_at": AT, **fields}
        s = Sent(body["idempotency_key"], body)
        self.sent.append(s)
        try:
            status, answer = await self._post(body)
        except (aiohttp.ClientError, OSError, TimeoutError):
            s.outcome = "unknown"
            return None
        if status in (200, 201):
            assert answer["status"] == ("recorded" if status == 201 else "duplicate"), answer
            self._ack(s, answer)
        elif status == 422:
            s.outcome, s.answer = "rejected", answer
        else:  # 503 and the like: not acknowledged, maybe committed
            s.outcome, s.answer = "unknown", answer
            return None
        return s

    async def batch(self, events: list[dict[str, Any]]) -> bool:
        items = [Sent(e["idempotency_key"], e, batch=events[0]["idempotency_key"]) for e in events]
        self.sent.extend(items)
        self.batches[events[0]["idempotency_key"]] = items
        try:
            status, answer = await self._post({"events": events})
        except (aiohttp.ClientError, OSError, TimeoutError):
            for s in items:
                s.outcome = "unknown"
            return False
        if status != 200:
            for s in items:
                s.outcome, s.answer = "unknown", answer
            return False
        for s, result in zip(items, answer["results"], strict=True):
            if result["status"] in ("recorded", "duplicate"):
                self._ack(s, result)
            elif result["error"]["code"] == "unavailable":
                s.outcome, s.answer = "unknown", result
            else:
                s.outcome, s.answer = "rejected", result
        return True

    async def worker(self, w: int) -> None:
        rng = random.Random(w)
        i = 0
        while True:
            seller = self.sellers[(w + i) % len(self.sellers)]
            order = f"o{w}-{i}-{self.tag}"
            channel = rng.choice(["qris", "shopee", "tokopedia", "whatsapp", "pos"])
            amount = rng.randint(100, 5000) * 100 * 100  # minor units, whole rupiah
            if i % 10 == 9:
                events = [
                    {"idempotency_key": uuid.uuid4().hex, "occurred_at": AT,
                     "type": "order.placed", "seller_id": seller, "order_id": f"{order}-b{j}",
                     "channel": channel, "amount": fmt(amount + j * 100)}
                    for j in range(4)
                ]  # fmt: skip
                if not await self.batch(events):
                    return
                i += 1
                continue
            placed = await self.one(type="order.placed", seller_id=seller, order_id=order,
                                    channel=channel, amount=fmt(amount))  # fmt: skip
            if placed is None:
                return
            if placed.outcome == "acked" and i % 7 == 3:
                if await self.one(type="order.cancelled", order_id=order, channel=channel) is None:
                    return
            elif placed.outcome == "acked":
                captured = await self.one(
                    type="payment.captured", order_id=order, channel=channel,
                    amount=fmt(amount), fee=fmt(amount * 7 // 1000), gateway="midtrans",
                    gateway_ref=f"pay-{order}",
                )  # fmt: skip
                if captured is None:
                    return
                if captured.outcome == "acked" and i % 5 == 0:
                    refund = await self.one(
                        type="refund.issued", order_id=order, channel=channel,
                        amount=fmt(amount // 2), gateway="midtrans", gateway_ref=f"rf-{order}",
                    )  # fmt: skip
                    if refund is None:
                        return
                if captured.outcome == "acked" and i % 6 == 1:
                    payout = await self.one(type="payout.sent", seller_id=seller,
                                            amount="100.00", reference=f"po-{order}")  # fmt: skip
                    if payout is None:
                        return
            i += 1


def expected_balances(committed: list[Sent], sellers: list[str]) -> dict[str, dict[str, str]]:
    """Balances folded from the bodies of the committed events, by the contract's rules."""
    minor = lambda s: int(s.replace(".", ""))  # noqa: E731 - every amount here has 2 digits
    acc: dict[str, dict[str, int]] = {s: defaultdict(int) for s in sellers}
    orders: dict[str, tuple[str, int]] = {}
    for s in committed:
        b = s.body
        if b["type"] == "order.placed":
            orders[b["order_id"]] = (b["seller_id"], minor(b["amount"]))
    for s in committed:
        b = s.body
        if b["type"] == "order.placed":
            acc[b["seller_id"]]["pending"] += minor(b["amount"])
        elif b["type"] == "order.cancelled":
            seller, amount = orders[b["order_id"]]
            acc[seller]["pending"] -= amount
        elif b["type"] == "payment.captured":
            seller, amount = orders[b["order_id"]]
            assert minor(b["amount"]) == amount  # always captured in full here
            acc[seller]["pending"] -= amount
            acc[seller]["captured"] += amount
            acc[seller]["fees"] += minor(b["fee"])
        elif b["type"] == "refund.issued":
            seller, _ = orders[b["order_id"]]
            acc[seller]["refunded"] += minor(b["amount"])
        elif b["type"] == "payout.sent":
            acc[b["seller_id"]]["paid_out"] += minor(b["amount"])
    out = {}
    for seller, a in acc.items():
        out[seller] = {
            "pending": fmt(a["pending"]),
            "available": fmt(a["captured"] - a["refunded"] - a["fees"] - a["paid_out"]),
            "captured_total": fmt(a["captured"]),
            "refunded_total": fmt(a["refunded"]),
            "fees_total": fmt(a["fees"]),
            "paid_out_total": fmt(a["paid_out"]),
        }
    return out


async def test_sigkill_mid_burst_loses_nothing_and_the_restart_converges(
    service: Service, http: Http, cli: CliRunner
) -> None:
    deployment = service.deployment
    tag = uuid.uuid4().hex[:6]
    sellers = [f"crash-{n}-{tag}" for n in range(SELLERS)]
    for n, seller in enumerate(sellers):
        await http.seller(seller, district=["Tamalate", "Panakkukang", None][n % 3])

    # -- the burst, and SIGKILL in the middle of it ------------------------------------------
    connector = aiohttp.TCPConnector(limit=WORKERS * 2)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=20)
    ) as session:
        burst = Burst(session, service.url, http.headers, sellers, tag)
        workers = [asyncio.create_task(burst.worker(w)) for w in range(WORKERS)]
        try:
            await asyncio.wait_for(burst.enough.wait(), 40)
        finally:
            await service.kill()
            done = await asyncio.wait_for(asyncio.gather(*workers, return_exceptions=True), 30)
    for result in done:
        if isinstance(result, BaseException):
            raise result

    by_outcome: dict[str, list[Sent]] = defaultdict(list)
    for s in burst.sent:
        by_outcome[s.outcome].append(s)
    acked, unknown = by_outcome["acked"], by_outcome["unknown"]
    assert set(by_outcome) <= {"acked", "rejected", "unknown"}, set(by_outcome)
    assert len(acked) >= KILL_AFTER_ACKS
    assert unknown, "the kill should have caught requests in flight"
    assert any(s.batch for s in acked), "some batches should have been acknowledged"
    ack_positions = [s.answer["position"] for s in acked]  # type: ignore[index]
    assert len(set(ack_positions)) == len(ack_positions), "two acknowledgements, one position"

    # -- restart ----------------------------------------------------------------------------
    await service.start()
    head = await http.caught_up(timeout_s=40)
    pool = await asyncpg.create_pool(deployment.dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        # Stored as "c:<client key>" (or "i:<the ledger's own key>", ledger/app/writer.py).
        keys = {
            r["key"].split(":", 1)[1]: r["position"]
            for r in await pool.fetch("SELECT key, position FROM idempotency_keys")
        }
        write_side = {
            r["seller_id"]: r
            for r in await pool.fetch("SELECT * FROM seller_accounts WHERE currency = 'IDR'")
        }
    finally:
        await pool.close()

    # Every acknowledged event is in the log where its answer said; positions 1..N.
    log = await http.events()
    assert [e["position"] for e in log] == list(range(1, head + 1))
    by_position = {e["position"]: e for e in log}
    lost = [s.key for s in acked if keys.get(s.key) != s.answer["position"]]  # type: ignore[index]
    assert not lost, f"{len(lost)} acknowledged events lost or moved, e.g. {lost[:5]}"
    for s in acked:
        a = s.answer
        assert a is not None
        e = by_position[a["position"]]
        assert (e["stream_id"], e["version"], e["type"]) == (
            a["stream_id"], a["version"], s.body["type"],
        ), (s.body, a, e)  # fmt: skip
    # Nothing rejected left a trace; nothing is in the log that no one sent.
    assert not [s.key for s in by_outcome["rejected"] if s.key in keys]
    sent_keys = {s.key for s in burst.sent}
    registrations = {f"seller.registered:{s}" for s in sellers}
    assert sorted(keys.values()) == list(range(1, head + 1)), "one key per position"
    assert set(keys) <= sent_keys | registrations, set(keys) - sent_keys - registrations
    committed = [s for s in burst.sent if s.key in keys]
    print(
        f"sent {len(burst.sent)}: acked {len(acked)}, rejected {len(by_outcome['rejected'])},"
        f" unknown {len(unknown)} of which committed"
        f" {sum(1 for s in unknown if s.key in keys)}; log head {head}"
    )

    verify = await cli("verify")
    assert verify.rc == 0, verify
    assert verify.out.startswith(f"ok: {head} events, chain intact"), verify

    # The stream holds exactly the log.
    info, msgs = await stream_messages(deployment.nats_url, deployment.stream)
    assert (info.state.first_seq, info.state.last_seq, info.state.messages) == (1, head, head)
    for seq, msg in enumerate(msgs, start=1):
        assert msg.seq == seq
        assert (msg.headers or {}).get("Nats-Msg-Id") == str(seq), (seq, msg.headers)
        event = by_position[seq]
        assert msg.subject == f"{deployment.prefix}.{event['type']}", (seq, msg.subject)
        assert orjson.loads(msg.data) == event, seq

    # Balances: projection == auditor's replay == write side == the clients' own fold.
    check = await cli("check-projections")
    assert check.rc == 0, check
    replay = await cli("replay", "--as-of", FAR_FUTURE)
    assert replay.rc == 0, replay
    replayed = {b["seller_id"]: money(b) for b in replay.json()["balances"]}
    one = await cli("replay", "--as-of", FAR_FUTURE, "--seller", sellers[0])
    assert one.rc == 0, one
    [only] = one.json()["balances"]
    assert money(only) == replayed[sellers[0]]
    clients = expected_balances(committed, sellers)
    for seller in sellers:
        status, projected = await http.get(f"/v1/sellers/{seller}/balance")
        assert status == 200, projected
        assert projected["as_of_position"] == head
        w = write_side[seller]
        written = {
            "pending": fmt(w["pending_minor"]),
            "available": fmt(w["captured_minor"] - w["refunded_minor"] - w["fees_minor"]
                             - w["paid_out_minor"]),
            "captured_total": fmt(w["captured_minor"]),
            "refunded_total": fmt(w["refunded_minor"]),
            "fees_total": fmt(w["fees_minor"]),
            "paid_out_total": fmt(w["paid_out_minor"]),
        }  # fmt: skip
        assert money(projected) == replayed[seller], seller
        assert money(projected) == written, seller
        assert money(projected) == clients[seller], seller

    # Re-sending: acknowledged ones, and committed ones whose answer the crash lost.
    resend_singles = [s for s in committed if s.batch is None]
    resend_batches = {b: items for b, items in burst.batches.items() if any(
        s.key in keys for s in items)}  # fmt: skip
    sem = asyncio.Semaphore(WORKERS)

    async def again(s: Sent) -> None:
        async with sem:
            status, answer = await http.post("/v1/events", s.body)
        assert status == 200, (s.body, answer)
        assert answer["status"] == "duplicate", answer
        assert answer["position"] == keys[s.key], (s.outcome, s.answer, answer)
        if s.answer is not None and s.outcome == "acked":
            assert answer["stream_id"] == s.answer["stream_id"]
            assert answer["version"] == s.answer["version"]

    async def again_batch(items: list[Sent]) -> None:
        async with sem:
            status, answer = await http.post("/v1/events", {"events": [s.body for s in items]})
        assert status == 200, answer
        for s, result in zip(items, answer["results"], strict=True):
            if s.key in keys:
                assert result["status"] == "duplicate", result
                assert result["position"] == keys[s.key], result
            else:  # never committed: recorded now, at a new position
                assert result["status"] == "recorded", result

    await asyncio.gather(
        *(again(s) for s in resend_singles), *(again_batch(b) for b in resend_batches.values())
    )
    newly = sum(1 for items in resend_batches.values() for s in items if s.key not in keys)
    assert await http.head() == head + newly


async def test_sigkill_of_the_parent_alone_leaves_no_process_behind(
    service: Service, http: Http, cli: CliRunner
) -> None:
    """``up`` may run its relay and projections as child processes: killing only the
    parent (the OOM killer picks one pid) must take them down too, and a restart
    must converge as before."""
    tag = uuid.uuid4().hex[:6]
    sellers = [f"orphan-{n}-{tag}" for n in range(2)]
    for seller in sellers:
        await http.seller(seller)

    async def batch(round_: int) -> None:
        events = [
            {"idempotency_key": uuid.uuid4().hex, "occurred_at": AT, "type": "order.placed",
             "seller_id": sellers[j % 2], "order_id": f"r{round_}-{j}-{tag}", "channel": "pos",
             "amount": "5000"}
            for j in range(50)
        ]  # fmt: skip
        status, answer = await http.post("/v1/events", {"events": events})
        assert status == 200, answer
        assert all(r["status"] == "recorded" for r in answer["results"]), answer

    await batch(1)
    await http.caught_up()
    assert service.proc is not None
    before = service.group()
    assert service.proc.pid in before

    os.kill(service.proc.pid, signal.SIGKILL)
    await service.proc.wait()
    for _ in range(200):  # 20 s
        if not (left := service.group()):
            break
        await asyncio.sleep(0.1)
    assert not left, f"outlived their parent by 20 s: {command_lines(left)}"

    await service.start()
    await batch(2)
    head = await http.caught_up()
    assert head == 2 + 100
    info, _ = await stream_messages(service.deployment.nats_url, service.deployment.stream)
    assert (info.state.first_seq, info.state.last_seq, info.state.messages) == (1, head, head)
    check = await cli("check-projections")
    assert check.rc == 0, check
    verify = await cli("verify")
    assert verify.rc == 0, verify
