"""PostgreSQL unreachable: 503 with Retry-After, no 500, no partial write; then writes resume.

The database really goes away: the app talks to it through a TCP proxy on
loopback that the test cuts (closing every connection) and restores.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.api.http import create_app, install_admin_key
from ledger.app.ledger import Ledger
from ledger.ops.settings import Settings
from ledger.store import LedgerStore

KEY = "unavailable-admin"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Proxy:
    """Forwards loopback TCP to PostgreSQL until cut; then refuses and drops everything."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for writer in list(self.pipes):
            writer.transport.abort()
        self.pipes.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.pipes.update({writer, up_writer})

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


def _via(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        pytest.fail("this test needs PostgreSQL over TCP on loopback")
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_database_down_is_503_then_writes_resume(pg_dsn, uid):
    target = urlsplit(pg_dsn)
    proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5432)
    proxy.port = _free_port()
    await proxy.start()
    dsn = _via(pg_dsn, proxy.port)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4, timeout=2, command_timeout=3)
    assert pool is not None
    store = LedgerStore(pool)
    await store.migrate()
    await install_admin_key(store, KEY)
    ledger = Ledger(store)
    ledger.start()
    app = create_app(Settings(database_url=dsn), ledger, store)
    seller = uid("s")
    event = {
        "idempotency_key": uid("k"), "type": "order.placed",
        "occurred_at": "2026-11-30T10:00:00+08:00", "seller_id": seller,
        "order_id": uid("o"), "channel": "qris", "amount": "1000",
    }  # fmt: skip
    try:
        async with TestClient(TestServer(app)) as client:
            r = await client.post("/v1/sellers", json={"seller_id": seller, "name": "S"},
                                  headers=AUTH)  # fmt: skip
            assert r.status == 201
            head_before, _ = await store.head()

            await proxy.cut()
            for method, path, body in (
                ("POST", "/v1/events", event),
                ("GET", "/v1/events?after=0", None),
                ("GET", f"/v1/sellers/{seller}/balance", None),
                ("GET", "/healthz", None),
            ):
                r = await client.request(method, path, json=body, headers=AUTH)
                assert r.status == 503, (method, path, r.status, await r.text())
                assert r.headers.get("Retry-After") == "1"
                if path != "/healthz":
                    assert (await r.json())["error"]["code"] == "unavailable"

            await proxy.start()  # the database is back on the same address
            for _ in range(50):
                r = await client.post("/v1/events", json=event, headers=AUTH)
                if r.status != 503:
                    break
                await asyncio.sleep(0.2)
            assert r.status == 201, await r.text()  # the refused attempt wrote nothing
            r = await client.post("/v1/events", json=event, headers=AUTH)
            assert r.status == 200 and (await r.json())["status"] == "duplicate"
            head_after, _ = await store.head()
            assert head_after == head_before + 1
    finally:
        await ledger.stop()
        await pool.close()
        with contextlib.suppress(Exception):
            await proxy.cut()
