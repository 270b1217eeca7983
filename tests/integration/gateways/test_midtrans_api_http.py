"""``gateways.midtrans_api``: the Get Status call against the local stand-in, and its failures."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gateways.midtrans_api import (
    BODY_BYTES_MAX,
    STATUS_CLIENT,
    StatusClient,
    StatusUnavailable,
    client_context,
)
from ledger.api.http import SETTINGS
from ledger.ops.settings import Settings
from tests.integration.gateways.conftest import MIDTRANS_SERVER_KEY, fixture
from tests.integration.gateways.midtrans_standin import MidtransStandIn


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as s:
        yield s


def client(session: aiohttp.ClientSession, url: str, key: str | None = MIDTRANS_SERVER_KEY):
    return StatusClient(session, base_url=url, server_key=key)


async def test_it_returns_midtrans_answer_for_any_order_id(
    session: aiohttp.ClientSession, midtrans_api: MidtransStandIn
) -> None:
    order = "INV/2026/07?x=1#y"  # one path segment however it is spelled
    body = dict(fixture("midtrans_qris_settlement"), order_id=order)
    midtrans_api.knows(body)

    answer = await client(session, midtrans_api.url + "/").status(order)

    assert answer["order_id"] == order
    assert answer["transaction_status"] == "settlement"
    assert "signature_key" not in answer
    assert midtrans_api.asked[-1] == order
    assert midtrans_api.accept == "application/json"


async def test_an_unknown_order_is_midtrans_404_body(
    session: aiohttp.ClientSession, midtrans_api: MidtransStandIn
) -> None:
    answer = await client(session, midtrans_api.url).status("never-sent")
    assert answer["status_code"] == "404"  # HTTP 200: confirm() reads it as "not a transaction"


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("down", "HTTP 503"),
        ("slow", "in time"),
        ("garbage", "not JSON"),
    ],
)
async def test_a_misbehaving_api_is_unavailable(
    session: aiohttp.ClientSession, midtrans_api: MidtransStandIn, mode, says: str
) -> None:
    midtrans_api.mode = mode
    midtrans_api.slow_s = 1.0  # over the session's 0.5 s
    with pytest.raises(StatusUnavailable, match=says):
        await client(session, midtrans_api.url).status("any")


async def test_another_key_is_refused_and_no_key_asks_nothing(
    session: aiohttp.ClientSession, midtrans_api: MidtransStandIn
) -> None:
    with pytest.raises(StatusUnavailable, match="HTTP 401"):
        await client(session, midtrans_api.url, "SB-Mid-server-someone-else").status("any")
    asked = len(midtrans_api.asked)
    with pytest.raises(StatusUnavailable, match="no Midtrans server key"):
        await client(session, midtrans_api.url, None).status("any")
    assert len(midtrans_api.asked) == asked


async def test_a_closed_port_is_unreachable(session: aiohttp.ClientSession) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    with pytest.raises(StatusUnavailable, match="unreachable"):
        await client(session, f"http://127.0.0.1:{port}").status("any")


async def test_an_answer_over_the_limit_is_refused(
    session: aiohttp.ClientSession, midtrans_api: MidtransStandIn
) -> None:
    midtrans_api.answer("huge", {"status_code": "200", "padding": "x" * BODY_BYTES_MAX})
    with pytest.raises(StatusUnavailable, match="over"):
        await client(session, midtrans_api.url).status("huge")


async def test_the_app_opens_one_session_and_closes_it(midtrans_api: MidtransStandIn) -> None:
    app = web.Application()
    app[SETTINGS] = Settings(midtrans_server_key="k", midtrans_api_url=midtrans_api.url)
    app.cleanup_ctx.append(client_context)
    runner = web.AppRunner(app)
    await runner.setup()
    status_client = app[STATUS_CLIENT]
    session = status_client._session
    assert not session.closed
    assert session.timeout.total == 5.0
    await runner.cleanup()
    assert session.closed
