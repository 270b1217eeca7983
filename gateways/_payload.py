"""Reading a gateway's JSON payload: the checks all three adapters share.

Private to ``gateways``. Every string that ends up in a canonical event goes
through :func:`text` (or :func:`ident`), every time through one of the time
readers, every key through :func:`idempotency_key`, so the limits live here:
no NUL or lone surrogate (PostgreSQL and orjson refuse them, which would
surface as a 500 far from the cause), bounded lengths, timezone-aware times.
Stdlib only apart from the ledger's own error tree; no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Final

from ledger.domain.errors import BadRequest, ValidationError
from ledger.domain.json_input import unique_pairs
from ledger.domain.money import format_minor, parse_amount

#: CONTRACT section 2: an idempotency key is 1-200 characters.
IDEMPOTENCY_KEY_LENGTH_MAX: Final[int] = 200
#: Gateway identifiers (order ids, transaction ids, refund keys). The ledger
#: narrows order ids to 64 characters itself; an adapter only refuses what no
#: gateway documents, so a long but real id still reaches the suspense list.
IDENT_LENGTH_MAX: Final[int] = 255
#: Free text copied into ``metadata`` is cut here, which keeps metadata far
#: below the contract's 4 KiB.
METADATA_TEXT_LENGTH_MAX: Final[int] = 100

#: Midtrans prints local times of Asia/Jakarta (WIB). WIB has had no daylight
#: saving since 1964, so a fixed offset is exact and needs no tz database.
WIB: Final = timezone(timedelta(hours=7))

_RFC3339: Final = re.compile(
    r"\A(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z"
)
_MIDTRANS_TIME: Final = re.compile(r"\A(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})\Z")
#: Seconds of 9999-12-31T23:59:59Z: the last instant a datetime can hold.
_UNIX_SECONDS_MAX: Final[int] = 253_402_300_799


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def load_object(raw_body: bytes) -> dict[str, Any]:
    """Decodes a UTF-8 JSON object; anything else is ``BadRequest``.

    The stdlib decoder with ``parse_float=Decimal`` is used rather than orjson
    on purpose: a JSON number with a fraction is kept exact (``10000.0`` stays
    ``Decimal("10000.0")``, never a float), and an integer past 64 bits stays
    an ``int`` for the amount check to refuse, where orjson would hand back a
    float. ``NaN``/``Infinity`` are refused, as is nesting deep enough to
    exhaust the recursion limit. A key given twice in one object is refused
    (``DuplicateKey``, 422): which copy a gateway meant is not ours to guess.
    """
    if not isinstance(raw_body, bytes | bytearray | memoryview):
        raise BadRequest("body must be bytes")
    try:
        text_body = bytes(raw_body).decode("utf-8")
        value = json.loads(
            text_body,
            parse_float=Decimal,
            parse_constant=_refuse_constant,
            object_pairs_hook=unique_pairs,  # a repeated key: DuplicateKey (422), not "last wins"
        )
    except (ValueError, RecursionError) as error:
        # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        raise BadRequest("body is not readable JSON") from error
    if not isinstance(value, dict):
        raise BadRequest("body must be a JSON object")
    return value


def _clean(value: str, field: str) -> str:
    if "\x00" in value:
        raise ValidationError("text must not contain NUL", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValidationError("text must be valid Unicode", field=field) from error
    return value


def text(
    container: dict[str, Any], name: str, *, field: str, length_max: int = IDENT_LENGTH_MAX
) -> str:
    """A required non-empty string member."""
    value = container.get(name)
    if value is None:
        raise ValidationError(f"{field} is required", field=field)
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{field} must be a non-empty string", field=field)
    if len(value) > length_max:
        raise ValidationError(f"{field} is longer than {length_max} characters", field=field)
    return _clean(value, field)


def optional_text(
    container: dict[str, Any], name: str, *, field: str, length_max: int = IDENT_LENGTH_MAX
) -> str | None:
    """A string member that may be absent, null or empty (then ``None``)."""
    if container.get(name) in (None, ""):
        return None
    return text(container, name, field=field, length_max=length_max)


def ident(container: dict[str, Any], name: str, *, field: str) -> str:
    """A required identifier: a non-empty string without control characters."""
    value = text(container, name, field=field)
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValidationError(f"{field} must not contain control characters", field=field)
    return value


def member_object(container: dict[str, Any], name: str, *, field: str) -> dict[str, Any]:
    value = container.get(name)
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be an object", field=field)
    return value


def integer(value: object, *, field: str, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """A JSON integer (not a bool, not a fraction) within bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer", field=field)
    if not minimum <= value <= maximum:
        raise ValidationError(f"{field} is out of range", field=field)
    return value


def amount_string(value: object, currency: str, *, field: str) -> str:
    """A decimal string or JSON integer -> the contract's string with the currency's digits."""
    return format_minor(parse_amount(value, currency, field=field), currency)


def amount_number(value: object, currency: str, *, field: str) -> str:
    """Like :func:`amount_string`, but also takes a JSON number written with a zero fraction.

    ``10000.0`` is accepted because it is decoded exactly (a ``Decimal``, see
    :func:`load_object`) and equals the integer 10000: no float is involved and
    nothing is rounded. Any non-zero fraction (``10000.5``) and exponent
    notation (``1e4``) are refused, as CONTRACT section 1 asks for JSON numbers.
    """
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        if not value.is_finite() or not isinstance(exponent, int) or exponent > 0:
            raise ValidationError("amount must not use exponent notation", field=field)
        if value != value.to_integral_value():
            raise ValidationError(
                "amount is a JSON number with a fraction; floats never become money", field=field
            )
        value = int(value)
    return amount_string(value, currency, field=field)


def _instant(parts: tuple[str | None, ...], tz: timezone, field: str) -> datetime:
    year, month, day, hour, minute, second = (int(part or "0") for part in parts[:6])
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as error:
        raise ValidationError(f"{field} is not a valid date and time", field=field) from error


def rfc3339(container: dict[str, Any], name: str, *, field: str) -> str:
    """An RFC 3339 time WITH offset -> ``isoformat()`` (fraction cut to microseconds)."""
    value = text(container, name, field=field, length_max=40)
    match = _RFC3339.match(value)
    if match is None:
        raise ValidationError(f"{field} must be an RFC 3339 time with an offset", field=field)
    groups = match.groups()
    if groups[7]:
        tz = UTC
    else:
        hours, minutes = int(groups[9]), int(groups[10])
        if hours > 23 or minutes > 59:
            raise ValidationError(f"{field} has an invalid offset", field=field)
        offset = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-offset if groups[8] == "-" else offset)
    moment = _instant(groups, tz, field)
    if groups[6]:
        moment = moment.replace(microsecond=int(groups[6][:6].ljust(6, "0")))
    return moment.isoformat()


def jakarta_time(container: dict[str, Any], name: str, *, field: str) -> str:
    """Midtrans ``YYYY-MM-DD HH:MM:SS`` (WIB, no offset printed) -> RFC 3339 with ``+07:00``."""
    value = text(container, name, field=field, length_max=40)
    match = _MIDTRANS_TIME.match(value)
    if match is None:
        raise ValidationError(f"{field} must look like YYYY-MM-DD HH:MM:SS", field=field)
    return _instant(match.groups(), WIB, field).isoformat()


def unix_time(value: object, *, field: str) -> str:
    """Unix seconds -> RFC 3339 in UTC."""
    seconds = integer(value, field=field, maximum=_UNIX_SECONDS_MAX)
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def idempotency_key(*parts: str) -> str:
    """Joins the gateway's own ids with ``:``; past 200 characters the tail is hashed.

    The hash keeps the key deterministic (a redelivery still collides) while
    staying within the contract's limit; the first part names the gateway and
    kind, so keys stay readable where it matters.
    """
    key = ":".join(parts)
    if len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        return key
    head = ":".join(parts[:2])
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{head}:sha256:{digest}"


def metadata(**values: object) -> dict[str, Any]:
    """A small metadata object: absent values dropped, strings cut to 100 characters."""
    result: dict[str, Any] = {}
    for name, value in values.items():
        if value is None or value == "":
            continue
        if isinstance(value, str):
            # descriptive text is mended, not refused: a refund's free-text
            # reason must not turn an authenticated money fact into a 422
            value = value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
            value = value[:METADATA_TEXT_LENGTH_MAX]
        elif isinstance(value, bool) or not isinstance(value, int):
            continue  # only strings and integers are copied; nothing else is needed
        result[name] = value
    return result


def loose_text(container: dict[str, Any], name: str) -> str | None:
    """An optional descriptive string for metadata: anything that is not a string is ignored."""
    value = container.get(name)
    return value if isinstance(value, str) else None


def secret_equals(received: str | None, expected: str) -> bool:
    """Constant-time comparison of a received secret with the configured one.

    Both sides are compared as UTF-8 bytes (``hmac.compare_digest`` raises on
    non-ASCII ``str``, which would turn a hostile header into a 500). An empty
    configured secret never matches: it means "not configured", not "no
    secret needed".
    """
    if received is None or not expected:
        return False
    return hmac.compare_digest(
        received.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
