"""JSON bodies with each object's keys unique.

RFC 8259 leaves duplicate names to the parser (orjson and the stdlib keep the
last), so ``{"amount": "1", "amount": "1000000"}`` would mean one thing to
a proxy or a signature check and another to us. A duplicate is refused,
naming the key. Stdlib and orjson only; no I/O.
"""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

from ledger.domain.errors import BadRequest, DuplicateKey

__all__ = ["KEY_ECHO_CHARS_MAX", "loads_unique", "unique_pairs"]

#: A key named in an error is cut to this: an answer never echoes much input.
KEY_ECHO_CHARS_MAX: Final = 64


def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An ``object_pairs_hook`` for ``json.loads`` that refuses a repeated key."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key if len(key) <= KEY_ECHO_CHARS_MAX else key[:KEY_ECHO_CHARS_MAX] + "..."
                raise DuplicateKey(f"the key {shown!r} appears twice in one object", field=shown)
            seen.add(key)
    return value


def loads_unique(raw: bytes) -> Any:
    """``orjson.loads(raw)``, refusing a duplicate key (``DuplicateKey``).

    orjson keeps the last of duplicate keys without a word, so the value is
    re-encoded and the colons counted: without a backslash in ``raw`` every
    string is written byte for byte as orjson writes it back, so ``raw`` has
    exactly as many colons as the re-encoding unless a key (or a dropped
    value's text) was lost. Equal counts prove there was no duplicate; any
    doubt (escapes, unequal counts) goes to the exact and slower stdlib parse
    with :func:`unique_pairs`. Raises ``orjson.JSONDecodeError`` as orjson does.
    """
    value = orjson.loads(raw)
    if not isinstance(value, dict | list):
        return value
    if b"\\" not in raw and raw.count(b":") == orjson.dumps(value).count(b":"):
        return value
    try:
        json.loads(raw, object_pairs_hook=unique_pairs)
    except RecursionError:
        # orjson read it (depth under 1024) but the stdlib cannot prove it clean
        raise BadRequest("the body is nested too deeply") from None
    except ValueError:
        # orjson accepted what the stdlib does not: nothing was proven either way
        raise BadRequest("the body is not valid JSON") from None
    return value
