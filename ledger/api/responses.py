"""Errors to HTTP answers, JSON in and out, and query parameters.

Errors map to statuses in one table (``ERROR_STATUS``), looked up along the
exception's MRO; the body is always ``{"error": {"code", "message", ...}}``.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson
from aiohttp import web

from ledger.domain.errors import (
    BadRequest,
    ChannelAccountTaken,
    Forbidden,
    IdempotencyConflict,
    LedgerError,
    NotFound,
    PayloadTooLarge,
    RuleViolation,
    SellerExists,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    ValidationError,
)
from ledger.domain.json_input import loads_unique

__all__ = [
    "ERROR_STATUS",
    "ERROR_TEXT_CHARS_MAX",
    "POSITION_MAX",
    "bounded_error",
    "error_response",
    "int_param",
    "json_response",
    "read_json",
    "status_for",
]

#: Text in an error body is cut to this many characters: an answer may quote
#: a prefix of what was sent, never all of it (a 900 KB currency came back whole).
ERROR_TEXT_CHARS_MAX: Final = 200

ERROR_STATUS: Final[dict[type[LedgerError], int]] = {
    BadRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    IdempotencyConflict: 409,
    SellerExists: 409,
    ChannelAccountTaken: 409,
    PayloadTooLarge: 413,
    ValidationError: 422,
    RuleViolation: 422,
    TooManyRequests: 429,
    Unavailable: 503,
    LedgerError: 400,
}


def status_for(error: LedgerError) -> int:
    for cls in type(error).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 400


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def _bounded(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if len(value) <= ERROR_TEXT_CHARS_MAX:
            return value
        return value[:ERROR_TEXT_CHARS_MAX] + f"... ({len(value)} characters)"
    if depth >= 4:
        return None
    if isinstance(value, dict):
        return {_bounded(k, 4): _bounded(v, depth + 1) for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple):
        return [_bounded(v, depth + 1) for v in value[:50]]
    return value


def bounded_error(error: LedgerError) -> dict[str, Any]:
    """``error.as_dict()`` with every text cut to ``ERROR_TEXT_CHARS_MAX``: a message
    that quotes the input (``unsupported currency '...'``) quotes only its start."""
    return _bounded(error.as_dict())  # type: ignore[no-any-return]


def error_response(error: LedgerError) -> web.Response:
    status = status_for(error)
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return json_response({"error": bounded_error(error)}, status, headers)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON, or a 400/413/422 naming what is wrong (a key
    given twice in one object is ``duplicate_key``, never "the last one wins")."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge("the body is larger than 1 MiB") from None
    if not raw:
        raise BadRequest("the body is empty; send a JSON object")
    try:
        return loads_unique(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"the body is not valid JSON: {e.msg[:100]}") from None


#: The highest log position a query may name (``after``): far past any real log.
POSITION_MAX: Final = 2**62

_DIGITS: Final = re.compile(r"\A[0-9]{1,19}\Z")


def int_param(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    """A query parameter of ASCII digits only (Python's ``int`` also takes
    ``+3``, `` 1``, ``1_0`` and other scripts' digits); absent or empty: ``default``."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _DIGITS.match(raw):
        raise ValidationError(f"{name} must be a whole number of digits 0-9", field=name)
    value = int(raw)
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}", field=name)
    return value
