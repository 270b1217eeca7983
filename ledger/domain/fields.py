"""Field values of canonical input: identifiers, timestamps, days, the closed
lists of channels and gateways, bounded free text and metadata.

Pure and total like ``commands``: a value is returned or a ``ValidationError``
names the field. Shared by the commands and by the read endpoints' parameters.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any, Final

import orjson

from ledger.domain.errors import ValidationError

__all__ = [
    "CHANNELS",
    "GATEWAYS",
    "GATEWAY_REF",
    "IDENTIFIER",
    "STATUS",
    "parse_day",
    "parse_identifier",
    "parse_timestamp",
    "read_channel",
    "read_gateway",
    "read_metadata",
    "read_text",
    "reject_nul",
]

CHANNELS: Final[frozenset[str]] = frozenset(
    {
        "qris",
        "shopee",
        "tokopedia",
        "lazada",
        "tiktok",
        "whatsapp",
        "instagram",
        "website",
        "pos",
        "other",
    }
)

#: Types a client may post. Internal types (seller.*, suspense.*, ...) are

#: The gateway names a fact may carry: one closed, lower-case list, so that a
#: payment's uniqueness (``payment_exists``) cannot be dodged by spelling its
#: gateway ``Midtrans``. ``cash`` and ``bank_transfer`` are the seller's own.
GATEWAYS: Final[frozenset[str]] = frozenset(
    {
        "midtrans",
        "xendit",
        "doku",
        "duitku",
        "ipaymu",
        "faspay",
        "shopee",
        "tokopedia",
        "lazada",
        "tiktok",
        "blibli",
        "bukalapak",
        "gopay",
        "ovo",
        "dana",
        "shopeepay",
        "linkaja",
        "bank_transfer",
        "cash",
    }
)

IDENTIFIER = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
GATEWAY_REF = re.compile(r"\A[\x21-\x7e]{1,200}\Z")
STATUS = re.compile(r"\A[A-Za-z0-9._ :-]{1,64}\Z")
METADATA_BYTES_MAX: Final = 4096


def parse_identifier(value: object, field_name: str) -> str:
    """CONTRACT section 1: 1-64 characters of ``A-Za-z0-9._:-``, and not ``.`` or
    ``..``: an id becomes a URL path segment, where those two mean "here" and
    "up" and would not name the record."""
    if not isinstance(value, str) or not IDENTIFIER.match(value) or value in (".", ".."):
        raise ValidationError(
            f"{field_name} must be 1-64 characters of A-Z a-z 0-9 . _ : -, not . or ..",
            field=field_name,
        )
    return value


_RFC3339 = re.compile(
    r"\A(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})\Z"
)


_EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(2999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


_DAY: Final = re.compile(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")


def parse_day(value: object, field_name: str = "date") -> date:
    """A calendar day as ``YYYY-MM-DD`` only (Python would also take ``20261130``
    and week dates), within the years timestamps may have."""
    if not isinstance(value, str) or not _DAY.match(value):
        raise ValidationError(f"{field_name} must be a YYYY-MM-DD date", field=field_name)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        # value is 10 characters here (checked above): echoing it is bounded
        raise ValidationError(
            f"{field_name} {value!r} is not a calendar day", field=field_name
        ) from None
    if not _EARLIEST.date() <= day <= _LATEST.date():
        raise ValidationError(
            f"{field_name} must lie between 2000-01-01 and 2999-12-31", field=field_name
        )
    return day


def parse_timestamp(value: object, field_name: str = "occurred_at") -> datetime:
    """RFC 3339 with an offset; a naive timestamp is refused, never guessed.

    Only RFC 3339's own form: other ISO 8601 spellings that Python would
    accept (week dates, ``+0800``, no seconds) are refused so that every
    client means the same instant by the same text.
    """
    if not isinstance(value, str):
        raise ValidationError(f"{field_name} must be an RFC 3339 timestamp", field=field_name)
    match = _RFC3339.match(value)
    if match is None:
        if isinstance(value, str) and re.match(r"\A\d{4}-\d{2}-\d{2}[Tt ][\d:.]+\Z", value):
            raise ValidationError(f"{field_name} must carry a UTC offset", field=field_name)
        raise ValidationError(
            f"{field_name} must be an RFC 3339 timestamp with an offset", field=field_name
        )
    day, clock, fraction, offset = match.groups()
    offset = "+00:00" if offset in ("Z", "z") else offset
    micro = f".{fraction[:6]}" if fraction else ""
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{micro}{offset}")
    except ValueError:
        raise ValidationError(
            f"{field_name} is not a valid date and time", field=field_name
        ) from None
    if not _EARLIEST <= moment <= _LATEST:
        raise ValidationError(
            f"{field_name} must lie between 2000-01-01 and 2999-12-31", field=field_name
        )
    return moment


def read_text(
    raw: dict[str, Any], name: str, pattern: re.Pattern[str], *, required: bool
) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise ValidationError(f"{name} is required", field=name)
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise ValidationError(f"{name} is malformed", field=name)
    return value


def read_channel(raw: dict[str, Any], *, required: bool) -> str | None:
    value = raw.get("channel")
    if value is None and not required:
        return None
    if not isinstance(value, str) or value not in CHANNELS:
        raise ValidationError(
            f"channel must be one of {', '.join(sorted(CHANNELS))}", field="channel"
        )
    return str(value)


def read_gateway(raw: dict[str, Any], *, required: bool) -> str | None:
    value = raw.get("gateway")
    if value is None and not required:
        return None
    if not isinstance(value, str) or value not in GATEWAYS:
        raise ValidationError(
            f"gateway must be one of {', '.join(sorted(GATEWAYS))} (lower case)", field="gateway"
        )
    return value


def read_metadata(raw: dict[str, Any]) -> dict[str, Any] | None:
    value = raw.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError("metadata must be an object", field="metadata")
    try:
        size = len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        raise ValidationError("metadata is not plain JSON", field="metadata") from None
    if size > METADATA_BYTES_MAX:
        raise ValidationError("metadata is larger than 4 KiB", field="metadata")
    return value


def reject_nul(value: object, field_name: str | None = None, *, depth: int = 0) -> None:
    """PostgreSQL text cannot hold U+0000: refuse it anywhere in a body, up front.

    Deeply nested values are refused too (a bound on everything we accept).
    """
    if depth > 32:
        raise ValidationError("the body is nested too deeply", field=field_name)
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError("text must not contain NUL characters", field=field_name)
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul(key, field_name or key, depth=depth + 1)
            reject_nul(item, field_name or key, depth=depth + 1)
    elif isinstance(value, list):
        for item in value:
            reject_nul(item, field_name, depth=depth + 1)
