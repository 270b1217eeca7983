"""A bounded load generator that behaves like a careful client.

A few writers post ``order.placed`` then ``payment.captured`` for a few
sellers, at a capped rate, for a fixed time and at most a fixed number of
writes. A write that is not acknowledged (a 5xx, a refused or dropped
connection, a timeout) is sent again with the same body and idempotency key
until it is acknowledged or its retry time runs out: the ledger must turn
such retries into one event. Every acknowledgement (2xx: its position) and
every failure is recorded, with the time it happened.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

__all__ = ["Load", "LoadConfig", "Write"]

AT = "2026-11-30T10:00:00+08:00"
#: statuses a careful client does not retry: the request itself is wrong
FINAL_STATUSES = frozenset({400, 401, 403, 404, 413, 422})


@dataclass(frozen=True)
class LoadConfig:
    writers: int = 4
    rate_per_s_max: float = 60.0  # all writers together
    duration_s: float = 8.0  # no new write starts after this
    writes_max: int = 2500
    #: a write not acknowledged is retried this long after the load's end, no longer
    retry_grace_s: float = 20.0
    retry_pause_s: float = 0.2
    request_timeout_s: float = 10.0


@dataclass
class Write:
    key: str
    body: dict[str, Any]
    position: int | None = None  # the acknowledged position
    status: str | None = None  # recorded | duplicate
    attempts: int = 0
    #: monotonic: first attempt sent, acknowledgement received
    sent_at: float = 0.0
    acked_at: float | None = None
    rejected: Any = None  # a 4xx answer: the test's own mistake, asserted absent


@dataclass
class Load:
    """One run of the generator against ``url``; figures in its attributes."""

    url: str
    headers: dict[str, str]
    sellers: list[str]
    tag: str
    config: LoadConfig = field(default_factory=LoadConfig)
    writes: list[Write] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    #: monotonic times of the first and last failed attempt
    first_failure_at: float | None = None
    last_failure_at: float | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    _stop_at: float = 0.0

    @property
    def acked(self) -> list[Write]:
        return [w for w in self.writes if w.position is not None]

    @property
    def unacked(self) -> list[Write]:
        return [w for w in self.writes if w.position is None and w.rejected is None]

    @property
    def rejected(self) -> list[Write]:
        return [w for w in self.writes if w.rejected is not None]

    @property
    def slowest_ack_s(self) -> float:
        """The longest a write waited for its acknowledgement, retries included."""
        return max((w.acked_at - w.sent_at for w in self.writes if w.acked_at), default=0.0)

    @property
    def failure_window_s(self) -> float:
        """From the first failed attempt to the last: how long clients saw an outage."""
        if self.first_failure_at is None or self.last_failure_at is None:
            return 0.0
        return self.last_failure_at - self.first_failure_at

    async def run(self) -> None:
        """Runs every writer to its end: ``duration_s`` plus at most ``retry_grace_s``."""
        cfg = self.config
        self.started_at = time.monotonic()
        self._stop_at = self.started_at + cfg.duration_s
        connector = aiohttp.TCPConnector(limit=cfg.writers * 2)
        timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._writer(session, n) for n in range(cfg.writers)))
        self.ended_at = time.monotonic()

    def stop(self) -> None:
        """No new write starts from now on; unacknowledged ones are still retried."""
        self._stop_at = min(self._stop_at, time.monotonic())

    def _fail(self, kind: str) -> None:
        now = time.monotonic()
        self.failures[kind] += 1
        if self.first_failure_at is None:
            self.first_failure_at = now
        self.last_failure_at = now

    async def _writer(self, session: aiohttp.ClientSession, n: int) -> None:
        cfg = self.config
        interval_s = cfg.writers / cfg.rate_per_s_max  # each writer's share of the rate
        next_at = time.monotonic()
        i = 0
        while time.monotonic() < self._stop_at and len(self.writes) < cfg.writes_max:
            seller = self.sellers[(n + i) % len(self.sellers)]
            order = f"{self.tag}-w{n}-{i}"
            amount = 1000 * (1 + (n * 7 + i) % 13)  # minor units
            placed = await self._write(session, {
                "type": "order.placed", "seller_id": seller, "order_id": order,
                "channel": "pos", "amount": _fmt(amount),
            })  # fmt: skip
            next_at = await _pace(next_at, interval_s)
            if placed.position is not None and time.monotonic() < self._stop_at:
                await self._write(session, {
                    "type": "payment.captured", "order_id": order, "channel": "pos",
                    "amount": _fmt(amount), "fee": _fmt(amount * 7 // 1000),
                    "gateway": "midtrans", "gateway_ref": f"pay-{order}",
                })  # fmt: skip
                next_at = await _pace(next_at, interval_s)
            i += 1

    async def _write(self, session: aiohttp.ClientSession, fields: dict[str, Any]) -> Write:
        cfg = self.config
        body = {"idempotency_key": uuid.uuid4().hex, "occurred_at": AT, **fields}
        w = Write(body["idempotency_key"], body, sent_at=time.monotonic())
        self.writes.append(w)
        data = orjson.dumps(body)
        headers = {"Content-Type": "application/json", **self.headers}
        while True:
            w.attempts += 1
            pause_s = cfg.retry_pause_s
            try:
                async with session.post(f"{self.url}/v1/events", data=data, headers=headers) as r:
                    status, raw = r.status, await r.read()
                    retry_after = r.headers.get("Retry-After")
            except TimeoutError:
                self._fail("timeout")
            except (aiohttp.ClientError, OSError):
                self._fail("connection")
            else:
                if 200 <= status < 300:
                    answer = orjson.loads(raw)
                    w.position, w.status = int(answer["position"]), answer["status"]
                    w.acked_at = time.monotonic()
                    return w
                if status in FINAL_STATUSES:
                    w.rejected = (status, raw[:500])
                    return w
                self._fail("503" if status == 503 else f"http {status}")
                if retry_after and retry_after.isdigit():
                    pause_s = min(float(retry_after), 2.0)
            if time.monotonic() + pause_s > self._stop_at + cfg.retry_grace_s:
                return w  # not acknowledged: the client gives up; committed or not
            await asyncio.sleep(pause_s)


async def _pace(next_at: float, interval_s: float) -> float:
    """Sleeps until this writer's next slot; a writer behind (after a stall) does not
    burst to catch up."""
    next_at = max(next_at + interval_s, time.monotonic())
    await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return next_at


def _fmt(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"
