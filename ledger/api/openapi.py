"""The OpenAPI 3.1 document served at ``/v1/openapi.json``.

Written by hand from CONTRACT.md; ``tests/api/test_openapi.py`` checks that
every route the app serves is documented here and nothing else is.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ledger.domain.commands import CHANNELS, EVENT_TYPES, GATEWAYS

__all__ = ["openapi_document"]

_AMOUNT = {
    "oneOf": [
        {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,20})(\.[0-9]{1,6})?$"},
        {"type": "integer", "minimum": 0},
    ],
    "description": "Currency units as a decimal string or a JSON integer; never a fraction. "
    "At most the currency's ISO 4217 minor-unit digits (IDR 2, JPY 0, KWD 3); greater than "
    "zero, except a fee; at most 2^63-1 minor units.",
}
_ID = {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}
_TIME = {"type": "string", "format": "date-time", "description": "RFC 3339 with an offset"}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    },
}
_CHANNEL = {"type": "string", "enum": sorted(CHANNELS)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description or "OK", "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "unreadable body",
        401: "no or bad credentials",
        403: "role may not",
        404: "not found",
        408: "the body did not arrive in time (OMNILEDGER_HTTP_BODY_TIMEOUT_S)",
        409: "conflict",
        413: "body over 1 MiB",
        422: "a rule or a field is violated (duplicate_key: a JSON object names a key twice)",
        429: "too many as-of reads at once; Retry-After",
        503: "database unavailable, or the connection cap reached; Retry-After",
    }
    return {str(s): _json(_ref("Error"), text[s]) for s in statuses}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    auth: bool = True,
    errors: tuple[int, ...] = (400, 401, 403, 422, 503),
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses | _errors(*errors)}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if not auth:
        op["security"] = []
    return op


def _q(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


def _p(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


@cache
def openapi_document() -> dict[str, Any]:
    from ledger.api.http import ROLES  # the app imports this module: import at first call

    recorded = _ref("Recorded")
    money = {"type": "string"}
    balance = _obj(
        seller_id=_ID,
        currency={"type": "string"},
        pending=money,
        available=money,
        captured_total=money,
        refunded_total=money,
        fees_total=money,
        paid_out_total=money,
        as_of_position={"type": "integer"},
    )
    gateway_ack = _json(_obj(status={"type": "string"}, results={"type": "array"}))
    paths: dict[str, Any] = {
        "/v1/events": {
            "post": _op(
                "Record one canonical event or a batch of up to 1000",
                {
                    "201": _json(recorded, "recorded"),
                    "200": _json(
                        {"oneOf": [recorded, _obj(results={"type": "array"})]},
                        "duplicate, or the per-event results of a batch",
                    ),
                },
                body={
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                _ref("Event"),
                                _obj(
                                    events={
                                        "type": "array",
                                        "items": _ref("Event"),
                                        "maxItems": 1000,
                                    }
                                ),
                            ]
                        }
                    }
                },
                errors=(400, 401, 403, 408, 409, 413, 422, 503),
            ),
            "get": _op(
                "The global log in position order",
                {
                    "200": _json(
                        _obj(
                            events={"type": "array", "items": _ref("Message")},
                            next_after={"type": ["integer", "null"]},
                        )
                    )
                },
                params=[
                    _q("after", {"type": "integer", "minimum": 0}),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ],
            ),
        },
        "/v1/orders/{channel}/{order_id}": {
            "get": _op(
                "An order's state and history",
                {
                    "200": _json(
                        _obj(
                            status={"type": "string"},
                            amount=money,
                            captured=money,
                            refunded=money,
                            history={"type": "array", "items": _ref("Message")},
                        )
                    )
                },
                params=[_p("channel"), _p("order_id")],
                errors=(401, 403, 404, 422, 503),
            ),
        },
        "/v1/sellers": {
            "post": _op(
                "Register a seller",
                {"201": _json(recorded), "200": _json(recorded)},
                body={
                    "application/json": {
                        "schema": _obj(
                            seller_id=_ID,
                            name={"type": "string"},
                            district={"type": "string"},
                            nib={"type": "string"},
                            channels={"type": "object", "additionalProperties": {"type": "string"}},
                        )
                    }
                },
                errors=(400, 401, 403, 409, 413, 422, 503),
            ),
        },
        "/v1/sellers/{seller_id}/curation": {
            "post": _op(
                "Record the incubator's curation",
                {"201": _json(recorded)},
                params=[_p("seller_id")],
                body={
                    "application/json": {
                        "schema": _obj(
                            status={"enum": ["verified", "rejected", "pending"]},
                            certifications={"type": "array"},
                        )
                    }
                },
                errors=(400, 401, 403, 413, 422, 503),
            ),
        },
        "/v1/sellers/{seller_id}/balance": {
            "get": _op(
                "A seller's balance (now, or as of a time from the log)",
                {"200": _json(balance)},
                params=[
                    _p("seller_id"),
                    _q("currency", {"type": "string"}),
                    _q("as_of", _TIME),
                    _q("known_at", _TIME),
                ],
                errors=(401, 403, 404, 422, 429, 503),
            ),
        },
        "/v1/sellers/{seller_id}/recaps": {
            "get": _op(
                "A seller's daily recaps per local day and channel",
                {"200": _json(_obj(seller_id=_ID, recaps={"type": "array"}))},
                params=[
                    _p("seller_id"),
                    _q("from", {"type": "string", "format": "date"}, True),
                    _q("to", {"type": "string", "format": "date"}, True),
                ],
                errors=(401, 403, 404, 422, 503),
            ),
        },
        "/v1/recaps/daily": {
            "get": _op(
                "The city recap of one local day",
                {
                    "200": _json(
                        _obj(
                            date={"type": "string"},
                            active_sellers={"type": "integer"},
                            channels={"type": "array"},
                            districts={"type": "array"},
                        )
                    )
                },
                params=[_q("date", {"type": "string", "format": "date"}, True)],
            ),
        },
        "/v1/projections": {
            "get": _op(
                "Projection positions and lag", {"200": _json(_obj(projections={"type": "array"}))}
            ),
        },
        "/v1/suspense": {
            "get": _op(
                "Gateway money that could not be applied (open entries, in log order)",
                {
                    "200": _json(
                        _obj(suspense={"type": "array"}, next_after={"type": ["integer", "null"]})
                    )
                },
                params=[
                    _q("after", {"type": "integer", "minimum": 0}),
                    _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ],
            ),
        },
        "/v1/suspense/{suspense_id}/resolve": {
            "post": _op(
                "Apply a suspense entry to an order",
                {"201": _json(recorded), "200": _json(recorded)},
                params=[_p("suspense_id")],
                body={"application/json": {"schema": _obj(channel=_CHANNEL, order_id=_ID)}},
                errors=(400, 401, 403, 404, 409, 413, 422, 503),
            ),
        },
        "/v1/reconciliations": {
            "post": _op(
                "Reconcile a gateway settlement report (CSV body)",
                {"200": _json(_obj(summary={"type": "object"}, findings={"type": "object"}))},
                params=[
                    _q("gateway", {"enum": ["midtrans", "xendit"]}, True),
                    _q("date", {"type": "string", "format": "date"}, True),
                ],
                body={"text/csv": {"schema": {"type": "string"}}},
                errors=(400, 401, 403, 413, 422, 503),
            ),
        },
        "/v1/keys": {
            "post": _op(
                "Create an API key (shown once)",
                {
                    "201": _json(
                        _obj(
                            key={"type": "string"},
                            role={"type": "string"},
                            seller_id={"type": ["string", "null"]},
                            gateway={"type": ["string", "null"]},
                        )
                    )
                },
                body={
                    "application/json": {
                        "schema": _obj(
                            role={"enum": sorted(ROLES)},
                            seller_id={
                                **_ID,
                                "description": "a seller key's seller (required); a gateway"
                                " key bound to one seller (optional)",
                            },
                            gateway={
                                "enum": sorted(GATEWAYS),
                                "description": "a gateway key bound to one gateway name: it"
                                " posts only facts naming it",
                            },
                        )
                    }
                },
                errors=(400, 401, 403, 413, 422, 503),
            ),
        },
        "/v1/gateways/midtrans/notifications": {
            "post": _op(
                "Midtrans HTTP notification (signature_key in the body)",
                {"200": gateway_ack},
                body={"application/json": {"schema": {"type": "object"}}},
                auth=False,
                errors=(400, 401, 413, 422, 503),
            ),
        },
        "/v1/gateways/xendit/callbacks": {
            "post": _op(
                "Xendit callback (x-callback-token header)",
                {"200": gateway_ack},
                body={"application/json": {"schema": {"type": "object"}}},
                auth=False,
                errors=(400, 401, 413, 422, 503),
            ),
        },
        "/v1/gateways/shopee/push": {
            "post": _op(
                "Shopee Open Platform push (Authorization HMAC)",
                {"200": gateway_ack},
                body={"application/json": {"schema": {"type": "object"}}},
                auth=False,
                errors=(400, 401, 413, 422, 503),
            ),
        },
        "/v1/openapi.json": {
            "get": _op("This document", {"200": _json({"type": "object"})}, errors=(401, 403))
        },
        "/healthz": {
            "get": _op(
                "Liveness, database reachability, and how far the relay is behind the log",
                {
                    "200": _json(
                        _obj(
                            status={"type": "string"},
                            database={"type": "string"},
                            head_position={"type": "integer"},
                            relay_position={"type": "integer"},
                            relay_lag_events={"type": "integer"},
                        )
                    )
                },
                auth=False,
                errors=(503,),
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "security": [],
                "responses": {
                    "200": {"description": "Prometheus text", "content": {"text/plain": {}}}
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Omni-Ledger",
            "version": "1.0.0",
            "description": "Event-sourced transaction ledger (CONTRACT v1).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _ERROR,
                "Recorded": _obj(
                    status={"enum": ["recorded", "duplicate"]},
                    position={"type": "integer"},
                    stream_id={"type": "string"},
                    version={"type": "integer"},
                    idempotency_key={"type": "string"},
                ),
                "Event": {
                    "type": "object",
                    "required": ["idempotency_key", "type", "occurred_at"],
                    "properties": {
                        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 200},
                        "type": {"enum": sorted(EVENT_TYPES)},
                        "occurred_at": _TIME,
                        "seller_id": _ID,
                        "order_id": _ID,
                        "channel": _CHANNEL,
                        "amount": _AMOUNT,
                        "fee": _AMOUNT,
                        "currency": {"type": "string", "default": "IDR"},
                        "gateway": {"enum": sorted(GATEWAYS)},
                        "gateway_ref": {"type": "string"},
                        "payment_ref": {
                            "type": "string",
                            "description": "refund.issued: the gateway_ref of the payment it"
                            " returns; the refund is then limited by what that payment captured",
                        },
                        "reference": {"type": "string"},
                        "status": {"type": "string"},
                        "metadata": {"type": "object", "description": "at most 4 KiB"},
                    },
                },
                "Message": _obj(
                    position={"type": "integer"},
                    stream_id={"type": "string"},
                    version={"type": "integer"},
                    type={"type": "string"},
                    data={"type": "object"},
                    occurred_at=_TIME,
                    recorded_at=_TIME,
                    hash={"type": "string"},
                    prev_hash={"type": "string"},
                ),
            },
        },
    }
