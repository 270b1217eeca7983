"""What a route promises, declared beside its handler; the OpenAPI document is built from it.

A handler carries its ``Spec`` (``@spec(...)``) the way it carries its roles
(``@require``). ``ledger.api.openapi`` walks the app's router and writes one
operation per served route from the two, so the document lists exactly what
the app serves (``create_app`` refuses an app with a route that has no spec),
and the limits and enums in it are the constants the handlers check: the
schemas here quote ``CHANNELS``, ``GATEWAYS``, ``EVENT_TYPES``, the identifier
and amount patterns of ``ledger.domain`` rather than copies of them.

Response schemas list every field a route returns, as ``required`` unless a
field is sometimes absent; ``tests/api`` validates real responses against the
served document with undeclared fields refused, so a renamed, added or
dropped field fails a test.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

# The document quotes the very objects the parsers match with, so a change
# to a rule changes the document too.
from ledger.domain.commands import (
    CHANNELS,
    EVENT_TYPES,
    GATEWAYS,
    IDEMPOTENCY_KEY_CHARS_MAX,
)
from ledger.domain.fields import IDENTIFIER, METADATA_BYTES_MAX
from ledger.domain.money import AMOUNT_MINOR_MAX, DECIMAL

__all__ = [
    "AMOUNT",
    "CHANNEL",
    "COMPONENTS",
    "DAY",
    "GATEWAY",
    "ID",
    "MONEY",
    "REPLICA_LAG_S",
    "TIME",
    "Param",
    "Reply",
    "Schema",
    "Spec",
    "nullable",
    "obj",
    "recorded_and",
    "ref",
    "spec",
    "spec_of",
]

Schema = dict[str, Any]
H = TypeVar("H")


def json_pattern(regex: re.Pattern[str]) -> str:
    """A Python ``\\A...\\Z`` pattern as JSON Schema's ``^...$`` (ECMA-262) pattern."""
    body = regex.pattern.removeprefix(r"\A").removesuffix(r"\Z")
    # a non-capturing group is spelled the same in both; nothing else here differs
    return f"^{body}$"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(props: Mapping[str, Schema], *, optional: Iterable[str] = (), **extra: Any) -> Schema:
    """An object of ``props``, each required unless named in ``optional``."""
    optional = set(optional)
    unknown = optional - set(props)
    if unknown:
        raise ValueError(f"optional fields not among the properties: {sorted(unknown)}")
    return {
        "type": "object",
        "properties": dict(props),
        "required": [name for name in props if name not in optional],
        **extra,
    }


ID: Final[Schema] = {"type": "string", "pattern": json_pattern(IDENTIFIER)}
TIME: Final[Schema] = {
    "type": "string",
    "format": "date-time",
    "description": "RFC 3339 with an offset",
}
DAY: Final[Schema] = {"type": "string", "format": "date", "description": "YYYY-MM-DD"}
CHANNEL: Final[Schema] = {"type": "string", "enum": sorted(CHANNELS)}
GATEWAY: Final[Schema] = {"type": "string", "enum": sorted(GATEWAYS)}
#: An amount as the ledger writes it: the currency's minor-unit digits, a sign when negative.
MONEY: Final[Schema] = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
#: An amount as a client may send it (``ledger.domain.money.parse_amount``).
AMOUNT: Final[Schema] = {
    "oneOf": [
        {"type": "string", "pattern": json_pattern(DECIMAL)},
        {"type": "integer", "minimum": 0},
    ],
    "description": "Currency units as a decimal string or a JSON integer; never a fraction. "
    "At most the currency's ISO 4217 minor-unit digits (IDR 2, JPY 0, KWD 3); greater than "
    f"zero, except a fee; at most {AMOUNT_MINOR_MAX} (2^63-1) minor units.",
}
POSITION: Final[Schema] = {"type": "integer", "minimum": 0}
#: Only in answers read from OMNILEDGER_READ_DATABASE_URL (``ledger.store.replica``).
REPLICA_LAG_S: Final[Schema] = {
    **nullable({"type": "number", "minimum": 0}),
    "description": "only when reads come from a read replica: how many seconds it is behind"
    " the primary (0 when it has replayed all it received; null: not known yet)",
}

_ERROR_DETAIL: Final[Schema] = obj(
    {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}},
    optional=("field",),
    # a rule's error names what it is about (suspense_id, channel, ...)
    additionalProperties=True,
)

_RECORDED: Final[Schema] = obj(
    {
        "status": {"enum": ["recorded", "duplicate"]},
        "position": POSITION,
        "stream_id": {"type": "string", "format": "uuid"},
        "version": {"type": "integer"},
        "idempotency_key": {
            **nullable({"type": "string"}),
            "description": "null for what the server records itself (curation)",
        },
    }
)


def recorded_and(extra: Mapping[str, Schema]) -> Schema:
    """``Recorded`` with more fields (one flat object: strict validation sees all of them)."""
    return obj({**_RECORDED["properties"], **extra})


_EVENT: Final[Schema] = obj(
    {
        "idempotency_key": {
            "type": "string",
            "minLength": 1,
            "maxLength": IDEMPOTENCY_KEY_CHARS_MAX,
        },
        "type": {"enum": sorted(EVENT_TYPES)},
        "occurred_at": TIME,
        "seller_id": ID,
        "order_id": ID,
        "channel": CHANNEL,
        "amount": AMOUNT,
        "fee": AMOUNT,
        "currency": {"type": "string", "default": "IDR"},
        "gateway": GATEWAY,
        "gateway_ref": {"type": "string"},
        "payment_ref": {
            "type": "string",
            "description": "refund.issued: the gateway_ref of the payment it"
            " returns; the refund is then limited by what that payment captured",
        },
        "reference": {"type": "string"},
        "status": {"type": "string"},
        "metadata": {"type": "object", "description": f"at most {METADATA_BYTES_MAX} bytes"},
    },
    optional=(
        "seller_id",
        "order_id",
        "channel",
        "amount",
        "fee",
        "currency",
        "gateway",
        "gateway_ref",
        "payment_ref",
        "reference",
        "status",
        "metadata",
    ),
)

_MESSAGE: Final[Schema] = obj(
    {
        "position": POSITION,
        "stream_id": {"type": "string", "format": "uuid"},
        "version": {"type": "integer"},
        "type": {"type": "string"},
        "data": {"type": "object"},
        "occurred_at": TIME,
        "recorded_at": TIME,
        "hash": {"type": "string"},
        "prev_hash": {"type": "string"},
    }
)

_BALANCE: Final[Schema] = obj(
    {
        "seller_id": ID,
        "currency": {"type": "string"},
        "pending": MONEY,
        "available": MONEY,
        "captured_total": MONEY,
        "refunded_total": MONEY,
        "fees_total": MONEY,
        "paid_out_total": MONEY,
        "as_of_position": POSITION,
        "as_of": {**TIME, "description": "?as_of= reads only: the time asked for"},
        "known_at": {**nullable(TIME), "description": "?as_of= reads only"},
        "lag_events": {
            "type": "integer",
            "minimum": 0,
            "description": "how far the answering read model is behind the log's head",
        },
        "seen": {
            "type": "boolean",
            "description": "false: the read model has not seen this registered seller yet"
            " (as of as_of_position); the zeros are not yet the seller's balance",
        },
        "replica_lag_s": REPLICA_LAG_S,
    },
    optional=("as_of", "known_at", "lag_events", "seen", "replica_lag_s"),
)

#: The shared schemas (``ref(name)``), in the document's ``components``.
COMPONENTS: Final[dict[str, Schema]] = {
    "Error": obj({"error": ref("ErrorDetail")}),
    "ErrorDetail": _ERROR_DETAIL,
    "Recorded": _RECORDED,
    "Event": _EVENT,
    "Message": _MESSAGE,
    "Balance": _BALANCE,
}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    schema: Schema
    where: Literal["query", "path"] = "query"
    required: bool = False
    description: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """One documented answer: a JSON body of ``schema`` unless ``media`` says otherwise."""

    schema: Schema | None
    description: str = "OK"
    media: str = "application/json"


@dataclass(frozen=True, slots=True)
class Spec:
    """A route's promise. Errors the middlewares answer for every such route
    (401/403 behind a role, 400/408/413 with a body, 503) are added by
    ``ledger.api.openapi``; ``errors`` lists the ones the handler raises."""

    summary: str
    replies: Mapping[int, Reply]
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    body: Schema | None = None
    body_media: str = "application/json"
    description: str = ""


def spec(
    summary: str,
    replies: Mapping[int, Schema | Reply],
    *,
    errors: Iterable[int] = (),
    params: Iterable[Param] = (),
    body: Schema | None = None,
    body_media: str = "application/json",
    description: str = "",
) -> Callable[[H], H]:
    """Marks a handler with what it promises (read by ``ledger.api.openapi``)."""
    made = Spec(
        summary=summary,
        replies={status: r if isinstance(r, Reply) else Reply(r) for status, r in replies.items()},
        errors=tuple(sorted(set(errors))),
        params=tuple(params),
        body=body,
        body_media=body_media,
        description=description,
    )

    def mark(handler: H) -> H:
        handler.spec = made  # type: ignore[attr-defined]
        return handler

    return mark


def spec_of(handler: object) -> Spec | None:
    found = getattr(handler, "spec", None)
    return found if isinstance(found, Spec) else None
