"""Gateway webhooks and the suspense list over HTTP (CONTRACT sections 3 and 4).

``GatewayRoutes`` is an extension of ``ledger.api.http.create_app``: it adds

- ``POST /v1/gateways/midtrans/notifications``, ``/v1/gateways/xendit/callbacks``
  and ``/v1/gateways/shopee/push``: public routes (no Bearer key), each
  authenticated by the gateway's own signature or token;
- ``GET /v1/suspense`` (admin, auditor) and ``POST /v1/suspense/{id}/resolve``
  (admin).

A webhook is handled in this order, and nothing in the body is used before
the signature passes: read the raw body (over 1 MiB: ``413``), refuse if the
gateway's secret is not configured (``401 gateway_not_configured``: the
gateway keeps the notification and retries, which is what we want until the
operator sets the secret), ``verify`` (``401 invalid_signature``, nothing
recorded), ``parse`` (``400``/``422`` for a body no adapter can read), then
``gateways.intake`` applies or suspends the canonical events one at a time
(Midtrans' money facts confirmed with its Get Status API first, through
``gateways.midtrans_api``).

The answer is ``200 {"status": "ok", "gateway", "results": [...]}`` with one
result per canonical event, ``status`` one of ``recorded``, ``duplicate``,
``suspense`` or ``ignored``. No body gets a 5xx; a 503 means the database
(or the writer) is unavailable and the gateway should retry.

Resolving (``gateways.suspense``): ``POST /v1/suspense/{id}/resolve
{channel, order_id}`` applies the stored fact to that order and records
``suspense.resolved`` in the same transaction (``201``). A rule violation is
a ``422`` and the entry stays open. Resolving again onto the same order
answers ``200`` ``duplicate`` (safe to retry); onto another order ``422
suspense_closed`` naming where it went. An unknown id is ``404``; a key
holding a different body ``409``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Final
from uuid import UUID

from aiohttp import web

from gateways import intake, midtrans, midtrans_api, shopee, suspense, xendit
from gateways.route_specs import LIST_SUSPENSE, RESOLVE_SUSPENSE, SUSPENSE_PAGE_MAX, webhook
from ledger.api.context import METRICS
from ledger.api.http import LEDGER, SETTINGS, STORE, int_param, json_response, read_json, require
from ledger.api.responses import POSITION_MAX
from ledger.domain.errors import LedgerError, NotFound, PayloadTooLarge, Unauthorized

__all__ = ["GatewayNotConfigured", "GatewayRoutes"]

MIDTRANS_PATH: Final = "/v1/gateways/midtrans/notifications"
XENDIT_PATH: Final = "/v1/gateways/xendit/callbacks"
SHOPEE_PATH: Final = "/v1/gateways/shopee/push"


class GatewayNotConfigured(Unauthorized):
    """The gateway's secret is not set on this server: 401, nothing read or recorded.

    401 rather than 503: the request cannot be authenticated, and a 5xx must
    mean "the database is down". Any non-2xx keeps the notification queued at
    the gateway, so nothing is lost while the operator sets the secret.
    """

    code = "gateway_not_configured"


class GatewayRoutes:
    """The webhook and suspense routes; secrets come from the app's ``Settings``."""

    def setup(self, app: web.Application) -> None:
        app.cleanup_ctx.append(midtrans_api.client_context)
        app.router.add_post(MIDTRANS_PATH, midtrans_notification)
        app.router.add_post(XENDIT_PATH, xendit_callback)
        app.router.add_post(SHOPEE_PATH, shopee_push)
        app.router.add_get("/v1/suspense", list_suspense)
        app.router.add_post("/v1/suspense/{suspense_id}/resolve", resolve_suspense)


# -- webhooks ------------------------------------------------------------------------------


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _refusals_counted(gateway: str) -> Callable[[Handler], Handler]:
    """A webhook whose notification is refused (bad signature, unreadable body) is
    counted as ``refused`` in ``omniledger_gateway_facts``; the answer is unchanged."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def counted(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except LedgerError:
                request.app[METRICS].gateway_facts.labels(gateway, "refused").inc()
                raise

        return counted

    return wrap


@webhook("Midtrans HTTP notification (signature_key in the body)")
@_refusals_counted("midtrans")
async def midtrans_notification(request: web.Request) -> web.Response:
    raw = await _read_body(request)
    server_key = request.app[SETTINGS].midtrans_server_key
    if not server_key:
        raise GatewayNotConfigured("OMNILEDGER_MIDTRANS_SERVER_KEY is not set on this server")
    midtrans.verify(raw, server_key=server_key)
    payload = midtrans.parse(raw)
    events = midtrans.to_events(payload)
    results = await intake.apply_midtrans(
        request.app[LEDGER],
        request.app[STORE],
        payload,
        events,
        status=request.app[midtrans_api.STATUS_CLIENT].status,
    )
    return _answer(request, midtrans.GATEWAY, results)


@webhook("Xendit callback (x-callback-token header)")
@_refusals_counted("xendit")
async def xendit_callback(request: web.Request) -> web.Response:
    raw = await _read_body(request)
    token = request.app[SETTINGS].xendit_callback_token
    if not token:
        raise GatewayNotConfigured("OMNILEDGER_XENDIT_CALLBACK_TOKEN is not set on this server")
    xendit.verify(request.headers.get(xendit.TOKEN_HEADER), expected_token=token)
    events = xendit.to_events(xendit.parse(raw))
    return await _apply(request, xendit.GATEWAY, events)


@webhook("Shopee Open Platform push (Authorization HMAC)")
@_refusals_counted("shopee")
async def shopee_push(request: web.Request) -> web.Response:
    raw = await _read_body(request)
    settings = request.app[SETTINGS]
    if not settings.shopee_partner_key or not settings.shopee_callback_url:
        raise GatewayNotConfigured(
            "OMNILEDGER_SHOPEE_PARTNER_KEY and OMNILEDGER_SHOPEE_CALLBACK_URL must both be set"
        )
    shopee.verify(
        raw,
        request.headers.get(shopee.SIGNATURE_HEADER),
        partner_key=settings.shopee_partner_key,
        callback_url=settings.shopee_callback_url,
    )
    events = shopee.to_events(shopee.parse(raw))
    return await _apply(request, shopee.GATEWAY, events)


async def _read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("the body is larger than 1 MiB") from None


async def _apply(request: web.Request, gateway: str, events: list[dict[str, Any]]) -> web.Response:
    results = await intake.apply_events(request.app[LEDGER], request.app[STORE], gateway, events)
    return _answer(request, gateway, results)


def _answer(request: web.Request, gateway: str, results: list[dict[str, Any]]) -> web.Response:
    counted = request.app[METRICS].gateway_facts
    for result in results:
        counted.labels(gateway, str(result.get("status"))).inc()
    return json_response({"status": "ok", "gateway": gateway, "results": results})


# -- the suspense list -----------------------------------------------------------------------


def _entry_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["suspense_id"])
    except ValueError:
        raise NotFound("no such suspense entry") from None


@LIST_SUSPENSE
@require("admin", "auditor")
async def list_suspense(request: web.Request) -> web.Response:
    limit = int_param(request, "limit", SUSPENSE_PAGE_MAX, low=1, high=SUSPENSE_PAGE_MAX)
    after = int_param(request, "after", 0, low=0, high=POSITION_MAX)
    return json_response(await suspense.open_entries(request.app[STORE], limit, after))


@RESOLVE_SUSPENSE
@require("admin")
async def resolve_suspense(request: web.Request) -> web.Response:
    entry_id = _entry_id(request)
    body = await read_json(request)
    answer, created = await suspense.resolve(
        request.app[LEDGER], request.app[STORE], entry_id, body
    )
    return json_response(answer, 201 if created else 200)
