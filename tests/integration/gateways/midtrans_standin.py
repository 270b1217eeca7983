"""A stand-in for Midtrans' Get Status API on 127.0.0.1 (this machine cannot reach Midtrans).

Serves ``GET /v2/{order_id}/status`` as docs.midtrans.com/reference/get-transaction-status
documents it: HTTP Basic auth with the server key as user name and an empty
password (else ``401`` with Midtrans' body), the transaction as a JSON object,
and for an order it does not know an HTTP 200 whose ``status_code`` is
``"404"`` ("Transaction doesn't exist.").

What it knows is what a test tells it: :meth:`knows` takes a notification
body and answers for that order as Midtrans would after sending it (the same
fields, without ``signature_key``); :meth:`answer` sets an answer outright.
``mode`` makes it misbehave: ``"down"`` (503), ``"slow"`` (answers after
``slow_s``), ``"garbage"`` (200 with HTML).
"""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
import uuid
from typing import Any, Literal

from aiohttp import web

Mode = Literal["up", "down", "slow", "garbage"]


class MidtransStandIn:
    #: how long "slow" waits by default: past the tests' 2 s client timeout
    SLOW_S = 3.0

    def __init__(self, server_key: str) -> None:
        self.server_key = server_key
        self.mode: Mode = "up"
        self.slow_s = self.SLOW_S
        #: order id -> the status answer served for it
        self.transactions: dict[str, dict[str, Any]] = {}
        #: order ids asked for, in order (every request, answered or not)
        self.asked: list[str] = []
        #: the Accept header of the last request
        self.accept: str | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    def knows(self, notification: dict[str, Any]) -> None:
        """Midtrans' record of the transaction once it sent ``notification``."""
        order_id = notification.get("order_id")
        if not isinstance(order_id, str):
            return
        answer = {k: v for k, v in notification.items() if k != "signature_key"}
        answer["status_message"] = "Success, transaction is found"
        self.transactions[order_id] = answer

    def answer(self, order_id: str, body: dict[str, Any]) -> None:
        self.transactions[order_id] = body

    def reset(self) -> None:
        self.mode = "up"
        self.slow_s = self.SLOW_S

    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._status)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _status(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        if not (path.startswith("/v2/") and path.endswith("/status")):
            return web.json_response({"status_code": "404"}, status=404)
        order_id = urllib.parse.unquote(path[len("/v2/") : -len("/status")])
        self.asked.append(order_id)
        self.accept = request.headers.get("Accept")
        expected = "Basic " + base64.b64encode(f"{self.server_key}:".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response(
                {
                    "status_code": "401",
                    "status_message": "Transaction cannot be authorized with the current"
                    " client/server key.",
                },
                status=401,
            )
        if self.mode == "down":
            return web.json_response({"status_code": "503"}, status=503)
        if self.mode == "slow":
            await asyncio.sleep(self.slow_s)
        if self.mode == "garbage":
            return web.Response(text="<html>gateway timeout</html>", content_type="text/html")
        known = self.transactions.get(order_id)
        if known is None:
            return web.json_response(
                {
                    "status_code": "404",
                    "status_message": "Transaction doesn't exist.",
                    "id": str(uuid.uuid4()),
                }
            )
        return web.json_response(known)
