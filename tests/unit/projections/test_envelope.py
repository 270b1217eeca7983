"""Decoding a message: what is accepted, and what is poison."""

from __future__ import annotations

import orjson
import pytest

from ledger.domain.errors import ValidationError
from ledger.domain.money import parse_amount
from projections.batch import decode_shared
from projections.envelope import PoisonMessage, amount_minor, decode
from tests.unit.projections.log_builder import LogBuilder


def body(message: dict) -> bytes:
    return orjson.dumps(message)


def test_a_well_formed_message_decodes() -> None:
    m = LogBuilder().order("s1", "o1", "10.00")
    assert decode(body(m)) == m


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json{", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"position": "7"}', "position"),
        (b'{"position": true}', "position"),
    ],
)
def test_garbage_is_poison(raw: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        decode(raw)


def test_an_altered_body_fails_the_hash() -> None:
    m = LogBuilder().capture("s1", "o1", "10.00")
    m["data"]["amount"] = "10000.00"
    with pytest.raises(PoisonMessage, match="hash mismatch"):
        decode(body(m))
    assert decode(body(m), verify_hash=False)["data"]["amount"] == "10000.00"


def test_a_time_without_offset_is_poison() -> None:
    log = LogBuilder()
    m = log.order("s1", "o1", "10.00", at="2026-11-30T10:00:00")
    with pytest.raises(PoisonMessage, match="offset"):
        decode(body(m))


def test_the_consumers_share_a_decode_but_never_skip_a_check() -> None:
    m = LogBuilder().capture("s1", "o1", "10.00")
    first = decode_shared(body(m), verify_hash=True)
    assert first == m
    assert decode_shared(bytes(body(m)), verify_hash=True) is first  # equal bytes, one decode
    m["data"]["amount"] = "10000.00"
    altered = body(m)
    assert decode_shared(altered, verify_hash=False)["data"]["amount"] == "10000.00"
    for _ in range(2):  # kept without the check is not handed out with it; poison not kept
        with pytest.raises(PoisonMessage, match="hash mismatch"):
            decode_shared(altered, verify_hash=True)


@pytest.mark.parametrize("currency", ["IDR", "JPY", "KWD"])
@pytest.mark.parametrize(
    "value",
    [
        "0", "0.00", "0.000", "00.00", "01.00", "1", "1.", ".5", "1.5", "1.50", "1.500",
        "1.5000000", "150000.00", "150000", "-1.00", "+1.00", " 1.00", "1.00 ", "1e5",
        "\u0661\u0662.\u0660\u0660", "\u00b2", "1_000.00", "9" * 21, "9" * 22,
        "92233720368547758.07",
        "92233720368547758.08", "9223372036854775807", "9223372036854775808", "",
    ],
)  # fmt: skip
def test_the_published_amount_form_is_read_as_parse_amount_reads_it(
    value: str, currency: str
) -> None:
    """``amount_minor`` reads ``format_minor``'s form without the regular expression:
    whatever the string, it gives what ``parse_amount`` gives, or refuses it too."""
    data = {"amount": value}
    try:
        expected: int | None = parse_amount(value, currency, allow_zero=True)
    except ValidationError:
        expected = None
    if expected is None:
        with pytest.raises(PoisonMessage):
            amount_minor(data, "amount", currency)
    else:
        assert amount_minor(data, "amount", currency) == expected
