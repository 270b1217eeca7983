"""Helpers for the projection integration tests (not a test module): publishing, waiting."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ledger.contract.messages import subject_for
from projections import Consumer

__all__ = ["Stream", "drain", "stored_position", "until"]


@dataclass
class Stream:
    name: str
    prefix: str
    js: JetStreamContext
    nc: NATS

    async def publish(
        self, messages: Iterable[dict[str, Any]], *, msg_id: str | None = None
    ) -> None:
        """Publishes like the relay: subject by type, ``Nats-Msg-Id`` = position, waits for acks."""
        for m in messages:
            await self.publish_raw(
                subject_for(m["type"], self.prefix),
                orjson.dumps(m),
                msg_id if msg_id is not None else str(m["position"]),
            )

    async def publish_raw(self, subject: str, body: bytes, msg_id: str | None = None) -> None:
        headers = {"Nats-Msg-Id": msg_id} if msg_id is not None else None
        await self.js.publish(subject, body, stream=self.name, headers=headers)

    async def publish_fast(self, messages: Iterable[dict[str, Any]]) -> int:
        """Core-NATS publishes (no per-message ack), then waits until the stream holds them."""
        before = (await self.js.stream_info(self.name)).state.messages
        n = 0
        for m in messages:
            await self.nc.publish(
                subject_for(m["type"], self.prefix),
                orjson.dumps(m),
                headers={"Nats-Msg-Id": str(m["position"])},
            )
            n += 1
        await self.nc.flush()
        for _ in range(600):
            if (await self.js.stream_info(self.name)).state.messages >= before + n:
                return n
            await asyncio.sleep(0.05)
        raise AssertionError("stream did not receive every message")


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Polls ``condition`` until true; fails after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def drain(consumer: Consumer, position: int, timeout_s: float = 10.0) -> None:
    """Steps a started consumer until its stored position reaches ``position``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while consumer.position < position:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"consumer at {consumer.position}, wanted {position}")
        await consumer.step()


async def stored_position(pool: asyncpg.Pool, name: str) -> int:
    return await pool.fetchval("SELECT position FROM projection_positions WHERE name = $1", name)
