"""Decoding one published message into a checked dict, and the field readers the folds use.

A message is the object of ``ledger/contract/messages.py``. Anything that cannot be
read - not JSON, a missing field, a bad amount, a hash that does not match -
raises :class:`PoisonMessage`; the consumer records it in
``projection_poison`` and moves on (it never blocks the stream). Pure: no I/O.
"""

from __future__ import annotations

import functools
from datetime import date, datetime, tzinfo
from typing import Any, Final

import orjson

from ledger.contract.messages import chain_hash
from ledger.domain.errors import ValidationError
from ledger.domain.money import AMOUNT_MINOR_MAX, CURRENCY_DIGITS, parse_amount, parse_currency

__all__ = [
    "PoisonMessage",
    "amount_minor",
    "check",
    "currency",
    "decode",
    "local_day",
    "optional_text",
    "recorded_at",
    "text",
]

#: Upper bound on any identifier a fold keeps (CONTRACT allows 64 for ids;
#: names and districts are longer). Longer means the message is broken.
TEXT_CHARS_MAX: Final = 200
#: A message larger than this is not one of ours (the HTTP body limit is 1 MiB).
BODY_BYTES_MAX: Final = 1_048_576


class PoisonMessage(ValueError):
    """A message that can never be applied; ``str()`` says why."""


def decode(body: bytes, *, verify_hash: bool = True) -> dict[str, Any]:
    """Parses and checks the envelope of one message; the ``data`` is checked by each fold.

    With ``verify_hash`` the message's own ``hash`` must equal
    ``chain_hash(prev_hash, message)``: a body altered on the way is refused.
    (The link to the previous message is ``omniledger verify``'s job.)
    """
    if len(body) > BODY_BYTES_MAX:
        raise PoisonMessage(f"body of {len(body)} bytes is over {BODY_BYTES_MAX}")
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise PoisonMessage(f"not JSON: {e}") from e
    return check(message, verify_hash=verify_hash)


def check(message: object, *, verify_hash: bool = True) -> dict[str, Any]:
    """Checks the envelope of a message already parsed from JSON (as a rebuild reads them)."""
    if not isinstance(message, dict):
        raise PoisonMessage("not a JSON object")
    position = message.get("position")
    if type(position) is not int or position < 1:
        raise PoisonMessage(f"position {position!r} is not a positive integer")
    for name in ("type", "occurred_at", "recorded_at"):
        if not isinstance(message.get(name), str):
            raise PoisonMessage(f"{name} is missing or not a string")
    if not isinstance(message.get("data"), dict):
        raise PoisonMessage("data is missing or not an object")
    _instant(message["occurred_at"], "occurred_at")
    _instant(message["recorded_at"], "recorded_at")
    if verify_hash:
        expected, prev = message.get("hash"), message.get("prev_hash")
        if not isinstance(expected, str) or not isinstance(prev, str) or len(prev) != 64:
            raise PoisonMessage("hash or prev_hash is missing")
        try:
            actual = chain_hash(prev, message)
        except (KeyError, ValueError, TypeError) as e:
            raise PoisonMessage(f"cannot hash: {e}") from e
        if actual != expected:
            raise PoisonMessage(f"hash mismatch at position {position}")
    return message


def recorded_at(message: dict[str, Any]) -> datetime:
    return _instant(message["recorded_at"], "recorded_at")


def local_day(occurred_at: str, zone: tzinfo) -> date:
    """The calendar day of ``occurred_at`` in ``zone`` (CONTRACT section 1).

    >>> from zoneinfo import ZoneInfo
    >>> local_day("2026-11-30T17:30:00Z", ZoneInfo("Asia/Makassar"))
    datetime.date(2026, 12, 1)
    """
    return _instant(occurred_at, "occurred_at").astimezone(zone).date()


def _instant(value: object, name: str) -> datetime:
    if not isinstance(value, str):
        raise PoisonMessage(f"{name} is not a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as e:
        raise PoisonMessage(f"{name} {value[:40]!r} is not RFC 3339") from e
    if moment.tzinfo is None:
        raise PoisonMessage(f"{name} {value[:40]!r} has no offset")
    return moment


def text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value or len(value) > TEXT_CHARS_MAX:
        raise PoisonMessage(f"data.{name} is missing or not a short string")
    return value


def optional_text(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > TEXT_CHARS_MAX:
        raise PoisonMessage(f"data.{name} is not a short string")
    return value


def currency(data: dict[str, Any]) -> str:
    try:
        return parse_currency(data.get("currency"))
    except ValidationError as e:
        raise PoisonMessage(f"data.currency: {e.message}") from e


def amount_minor(
    data: dict[str, Any], name: str, currency_code: str, *, absent_ok: bool = False
) -> int:
    """``data[name]`` in minor units; zero is allowed (a fee of ``"0.00"``)."""
    value = data.get(name)
    if type(value) is str:
        minor = _canonical_minor(value, CURRENCY_DIGITS[currency_code])
        if minor is not None:
            return minor
    if value is None and absent_ok:
        return 0
    try:
        return parse_amount(value, currency_code, field=name, allow_zero=True)
    except ValidationError as e:
        raise PoisonMessage(f"data.{name}: {e.message}") from e


#: digits of the largest whole part ``parse_amount`` accepts
_WHOLE_DIGITS_MAX: Final = 21


@functools.lru_cache(maxsize=4096)
def _canonical_minor(value: str, digits: int) -> int | None:
    """The minor units of an amount as the log publishes it, or ``None`` for any other
    form (which ``parse_amount`` then reads, or refuses, as the write side does).

    Cached (a pure function of its two arguments): the models that fold money
    each read the same amounts of a message (balances and recaps both read a
    capture's amount and fee), and prices repeat across orders.

    The published form is ``format_minor``'s: plain ASCII digits, no leading
    zero, and exactly the currency's fraction digits (``"150000.00"``). That
    one form is read here without a regular expression (``parse_amount`` was
    the largest single cost of the parse); it accepts nothing that
    ``parse_amount`` refuses and gives the same number.
    """
    whole, dot, fraction = value.partition(".")
    if not (whole.isascii() and whole.isdigit() and len(whole) <= _WHOLE_DIGITS_MAX):
        return None
    if whole[0] == "0" and whole != "0":
        return None
    if dot:
        if not (len(fraction) == digits > 0 and fraction.isascii() and fraction.isdigit()):
            return None
        minor = int(whole + fraction)
    else:
        minor = int(whole) * 10**digits
    return minor if minor <= AMOUNT_MINOR_MAX else None
