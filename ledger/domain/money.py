"""Money as integer minor units of an ISO 4217 currency.

Amounts arrive as decimal strings (``"150000"``, ``"150000.00"``) or JSON
integers. Floats never become money: a JSON number with a fraction, an
exponent, a sign, more fraction digits than the currency has, or a value past
64 bits is refused. Stdlib only; no I/O.
"""

from __future__ import annotations

import re
from typing import Final

from ledger.domain.errors import ValidationError

__all__ = ["AMOUNT_MINOR_MAX", "CURRENCY_DIGITS", "format_minor", "parse_amount", "parse_currency"]

#: Minor-unit digits of the active ISO 4217 currencies (the standard's
#: "minor unit" column). Most have 2; the exceptions are listed by digits.
#: IDR is quoted with 2 digits by every Indonesian gateway ("10000.00") even
#: though coins below 1 rupiah are not in circulation; CONTRACT section 1 fixes 2.
#: Every code is accepted so that money in a currency an order is not in is
#: refused as ``currency_mismatch`` (and a gateway's kept in suspense), not
#: answered as unreadable.
_TWO_DIGITS: Final = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP"
    " BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR"
    " FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR INR IRR JMD KES KGS KHR KPW KYD"
    " KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD"
    " NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP"
    " SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS"
    " VED VES WST XCD YER ZAR ZMW ZWL"
)
_OTHER_DIGITS: Final = {
    0: "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    3: "BHD IQD JOD KWD LYD OMR TND",
    4: "CLF UYW",
}
CURRENCY_DIGITS: Final[dict[str, int]] = dict.fromkeys(_TWO_DIGITS.split(), 2) | {
    code: digits for digits, codes in _OTHER_DIGITS.items() for code in codes.split()
}

#: Largest amount in minor units: a signed 64-bit column holds it.
AMOUNT_MINOR_MAX: Final[int] = 2**63 - 1

DECIMAL = re.compile(r"\A(0|[1-9][0-9]{0,20})(?:\.([0-9]{1,6}))?\Z")


def parse_currency(value: object, *, field: str = "currency") -> str:
    """Returns a known ISO 4217 code, defaulting to IDR when absent."""
    if value is None:
        return "IDR"
    if not isinstance(value, str) or value not in CURRENCY_DIGITS:
        raise ValidationError(f"unsupported currency {value!r}", field=field)
    return value


def parse_amount(
    value: object, currency: str, *, field: str = "amount", allow_zero: bool = False
) -> int:
    """Parses a decimal string or a JSON integer into minor units.

    >>> parse_amount("150000.5", "IDR")
    15000050
    """
    digits = CURRENCY_DIGITS[currency]
    if isinstance(value, bool):
        raise ValidationError("amount must be a decimal string or an integer", field=field)
    if isinstance(value, int):
        minor = int(value * 10**digits)
        if value < 0:
            raise ValidationError("amount must not be negative", field=field)
    elif isinstance(value, str):
        match = DECIMAL.match(value)
        if match is None:
            raise ValidationError(
                f"amount {value[:40]!r} is not a plain non-negative decimal", field=field
            )
        whole, fraction = match.group(1), match.group(2) or ""
        if len(fraction) > digits:
            raise ValidationError(
                f"amount has more than {digits} fraction digits for {currency}", field=field
            )
        minor = int(int(whole) * 10**digits + int(fraction.ljust(digits, "0") or "0"))
    elif isinstance(value, float) and value.is_integer() and abs(value) > AMOUNT_MINOR_MAX:
        # a JSON integer past 64 bits is read as a float: say what is wrong with it
        raise ValidationError("amount is too large", field=field)
    else:
        # floats land here: 150000.5 or 1e5 in JSON are refused, never rounded
        raise ValidationError(
            "amount must be a decimal string or an integer, not a JSON fraction", field=field
        )
    if minor > AMOUNT_MINOR_MAX:
        raise ValidationError("amount is too large", field=field)
    if minor == 0 and not allow_zero:
        raise ValidationError("amount must be greater than zero", field=field)
    return minor


def format_minor(amount_minor: int, currency: str) -> str:
    """Formats minor units with the currency's digits: 15000000 -> "150000.00"."""
    digits = CURRENCY_DIGITS[currency]
    if amount_minor < 0:
        return "-" + format_minor(-amount_minor, currency)
    if digits == 0:
        return str(amount_minor)
    # digits padded to one more than the fraction: string slicing, no divmod (every
    # reader of the log formats each amount of each event)
    text = str(amount_minor).rjust(digits + 1, "0")
    return f"{text[:-digits]}.{text[-digits:]}"
