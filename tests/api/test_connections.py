"""Connection limits on a real listening server (``ledger.api.http.serve``), probed
with raw sockets.

Each test starts the app on 127.0.0.1 with limits of a fraction of a second
(``Settings``), so a client that holds a socket without finishing a request is
seen being closed, answered 408 or shed, and a client that hangs up is seen
not being counted as a database outage.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from ledger.api.http import create_app, serve
from ledger.app.ledger import Ledger
from ledger.ops.settings import Settings
from ledger.store import LedgerStore
from tests.api.conftest import ADMIN_KEY

HOST = "127.0.0.1"
#: how long past a limit a test waits for the server to act before failing
SLACK_S = 3.0

Start = Callable[..., Awaitable[int]]


@pytest.fixture
async def start(settings: Settings, ledger: Ledger, store: LedgerStore) -> AsyncIterator[Start]:
    """Starts the app with the given limits; returns its port. Stopped after the test."""
    runners: list[Any] = []

    async def run(**limits: Any) -> int:
        chosen = replace(settings, **limits)
        runner = await serve(create_app(chosen, ledger, store), chosen, HOST, 0)
        runners.append(runner)
        return int(runner.addresses[0][1])

    yield run
    for runner in runners:
        await runner.cleanup()


class Raw:
    """One raw TCP connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def closed_within(self, seconds: float) -> float | None:
        """Seconds until the server closed the connection (all it sent read), or None."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(seconds):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return None
        except ConnectionResetError:
            pass
        return time.monotonic() - started

    async def response(self, seconds: float = SLACK_S) -> tuple[int, bytes]:
        """The status and body of the next response (Content-Length framed)."""
        async with asyncio.timeout(seconds):
            head = await self.reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            body = await self.reader.readexactly(int(match.group(1))) if match else b""
        return int(head.split(b" ", 2)[1]), body

    def close(self) -> None:
        self.writer.close()

    async def aclose(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def get(port: int, path: str) -> tuple[int, bytes]:
    conn = await Raw.open(port)
    try:
        await conn.send(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return await conn.response()
    finally:
        await conn.aclose()


def post_head(length: int, path: str = "/v1/events") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


async def test_an_idle_connection_is_closed_after_the_header_timeout(start: Start) -> None:
    port = await start(http_header_timeout_s=0.5)
    conn = await Raw.open(port)
    waited = await conn.closed_within(0.5 + SLACK_S)
    await conn.aclose()
    assert waited is not None, "a connection that never sent a byte was kept open"
    assert waited >= 0.3, waited


async def test_a_slow_request_head_is_closed_after_the_header_timeout(start: Start) -> None:
    port = await start(http_header_timeout_s=0.5)
    conn = await Raw.open(port)
    await conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    closed = False
    # one header byte every 50 ms: the connection is never quiet, but its head never ends
    while time.monotonic() - started < 0.5 + SLACK_S:
        try:
            await conn.send(b"X")
        except ConnectionError:
            closed = True
            break
        if await conn.closed_within(0.05) is not None:
            closed = True
            break
    await conn.aclose()
    assert closed, "a head trickled byte by byte was kept open past the header timeout"


async def test_an_idle_keep_alive_connection_is_closed(start: Start) -> None:
    port = await start(http_keepalive_timeout_s=0.5, http_header_timeout_s=30)
    conn = await Raw.open(port)
    await conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _ = await conn.response()
    assert status == 200
    waited = await conn.closed_within(0.5 + SLACK_S)
    await conn.aclose()
    assert waited is not None, "an idle keep-alive connection was kept open"


async def test_a_slow_body_is_answered_408(start: Start) -> None:
    port = await start(http_body_timeout_s=0.5)
    conn = await Raw.open(port)
    await conn.send(post_head(1000) + b'{"type": ')
    status, body = await conn.response(0.5 + SLACK_S)
    assert status == 408, body
    assert b"request_timeout" in body
    assert await conn.closed_within(SLACK_S) is not None  # and the rest is not waited for
    await conn.aclose()


async def test_past_the_cap_an_idle_connection_makes_room(start: Start) -> None:
    port = await start(http_connections_max=10, http_header_timeout_s=60)
    idle = [await Raw.open(port) for _ in range(10)]
    try:
        await asyncio.sleep(0.1)  # all accepted
        status, body = await get(port, "/healthz")
        assert status == 200, body
        shed = await asyncio.gather(*(c.closed_within(0.2) for c in idle))
        assert sum(s is not None for s in shed) >= 1, "no idle connection was closed"
        assert shed[0] is not None, "the oldest idle connection goes first"
    finally:
        for conn in idle:
            await conn.aclose()


async def test_a_flood_of_idle_connections_cannot_starve_healthz(start: Start) -> None:
    """The review's 19,985 idle sockets, scaled down: 300 against a cap of 50."""
    port = await start(http_connections_max=50, http_header_timeout_s=60)
    flood: list[Raw] = []
    try:
        for _ in range(300):
            flood.append(await Raw.open(port))
        started = time.monotonic()
        status, _ = await get(port, "/healthz")
        assert status == 200
        assert time.monotonic() - started < 1.0
        _, metrics = await get(port, "/metrics")
        shed = re.search(rb'connections_closed_total\{reason="cap"\} (\d+)', metrics)
        assert shed is not None and int(shed.group(1)) >= 250, metrics.decode()
    finally:
        for conn in flood:
            conn.close()


async def test_past_the_cap_with_none_idle_a_new_connection_is_refused_503(start: Start) -> None:
    port = await start(http_connections_max=5, http_body_timeout_s=60)
    busy = [await Raw.open(port) for _ in range(5)]
    try:
        for conn in busy:  # each inside a request, its body not yet sent
            await conn.send(post_head(100) + b"{")
        await asyncio.sleep(0.2)
        status, body = await get(port, "/healthz")
        assert status == 503, body
        assert b"too many open connections" in body
        for conn in busy:  # none of them was cut off
            assert await conn.closed_within(0.05) is None
    finally:
        for conn in busy:
            await conn.aclose()


async def test_a_client_that_hangs_up_mid_body_is_not_a_database_outage(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = await start()
    for _ in range(3):
        conn = await Raw.open(port)
        await conn.send(post_head(1000) + b'{"type": "order.placed", ')
        await asyncio.sleep(0.05)  # the handler is reading the body
        conn.writer.transport.abort()  # type: ignore[attr-defined]
    metrics = b""
    deadline = time.monotonic() + SLACK_S
    while time.monotonic() < deadline:
        _, metrics = await get(port, "/metrics")
        if b'route="/v1/events",status="499"} 3.0' in metrics:
            break
        await asyncio.sleep(0.05)
    assert b'route="/v1/events",status="499"} 3.0' in metrics, metrics.decode()
    assert b'status="503"' not in metrics, metrics.decode()
    assert not [r for r in caplog.records if "database" in r.getMessage()], caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTX/1.1\r\nHost: x\r\n\r\n",  # a malformed request line
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",  # a malformed header
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # TLS to the plain port
    ],
)
async def test_malformed_http_is_one_info_line_without_a_traceback(
    start: Start, caplog: pytest.LogCaptureFixture, request_bytes: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    port = await start()
    conn = await Raw.open(port)
    await conn.send(request_bytes)
    status, body = await conn.response()
    await conn.aclose()
    assert status == 400, body
    await asyncio.sleep(0.05)
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(lines) == 1, caplog.text
    assert lines[0].levelno == logging.INFO and "malformed HTTP" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info], caplog.text


async def test_a_flood_of_malformed_http_cannot_flood_the_log(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    port = await start()
    for _ in range(40):
        conn = await Raw.open(port)
        await conn.send(b"GET / HTTX/1.1\r\n\r\n")
        await conn.response()
        await conn.aclose()
    assert len(caplog.records) <= 11, len(caplog.records)
