"""Midtrans' Get Status API: the one outgoing call, made before a notification moves money.

    client = app[STATUS_CLIENT]
    answer = await client.status(order_id)   # the decoded JSON body, or StatusUnavailable

``GET {base}/v2/{order_id}/status`` with HTTP Basic auth (the server key as
user name, an empty password) and ``Accept: application/json``
(docs.midtrans.com/reference/get-transaction-status). What the answer
*means* is decided in :func:`gateways.midtrans.confirm`, which is pure; this
module only fetches. One ``aiohttp.ClientSession`` per app, opened and
closed by the app's ``cleanup_ctx`` (:func:`client_context`).

Everything is bounded: the whole call (connection, request, body) by
``Settings.midtrans_api_timeout_ms``, the body by :data:`BODY_BYTES_MAX`, the
connections by :data:`CONNECTIONS_MAX`. No redirect is followed: the server
key rides in every request and goes to the configured host only. Anything
but a 200 with a JSON object is :class:`StatusUnavailable`; its message is
logged and never holds the key.
"""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web

from gateways.errors import StatusUnavailable
from ledger.api.http import SETTINGS

__all__ = ["STATUS_CLIENT", "StatusClient", "StatusUnavailable", "client_context"]

#: A status answer is one transaction with at most a refund list: far below this.
BODY_BYTES_MAX: Final[int] = 1024 * 1024
#: Concurrent status calls; more wait for a connection (inside the timeout).
CONNECTIONS_MAX: Final[int] = 32


class StatusClient:
    def __init__(
        self, session: aiohttp.ClientSession, *, base_url: str, server_key: str | None
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        # the server key as user name, an empty password (Midtrans' API authorization)
        self._authorization = (
            "Basic " + base64.b64encode(f"{server_key}:".encode()).decode() if server_key else None
        )

    async def status(self, order_id: str) -> dict[str, Any]:
        """Midtrans' current record of the transaction of ``order_id``."""
        if self._authorization is None:
            raise StatusUnavailable("no Midtrans server key is configured")
        # an order id may hold "/" or "?": one path segment, always
        url = f"{self._base_url}/v2/{urllib.parse.quote(order_id, safe='')}/status"
        try:
            async with self._session.get(
                url,
                headers={"Accept": "application/json", "Authorization": self._authorization},
                allow_redirects=False,
            ) as resp:
                if resp.status != 200:
                    raise StatusUnavailable(f"the status API answered HTTP {resp.status}")
                # read(n) returns what has arrived so far, not n bytes: read to the end
                body = bytearray()
                async for chunk in resp.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > BODY_BYTES_MAX:
                        raise StatusUnavailable(f"the status answer is over {BODY_BYTES_MAX} bytes")
        except TimeoutError:
            raise StatusUnavailable("the status API did not answer in time") from None
        except aiohttp.ClientError as error:
            raise StatusUnavailable(
                f"the status API is unreachable: {type(error).__name__}"
            ) from None
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise StatusUnavailable("the status answer is not JSON") from None
        if not isinstance(answer, dict):
            raise StatusUnavailable("the status answer is not a JSON object")
        return answer


STATUS_CLIENT: Final = web.AppKey("midtrans_status_client", StatusClient)


async def client_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: one session for the app's life, closed when the app stops."""
    settings = app[SETTINGS]
    timeout = aiohttp.ClientTimeout(total=settings.midtrans_api_timeout_ms / 1000)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS_MAX)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, raise_for_status=False
    ) as session:
        app[STATUS_CLIENT] = StatusClient(
            session,
            base_url=settings.midtrans_api_url,
            server_key=settings.midtrans_server_key,
        )
        yield
    # let the connector's transports close before the loop does (aiohttp's advice)
    await asyncio.sleep(0)
