"""parse_command and parse_timestamp (CONTRACT sections 1 and 2): every field, every type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from ledger.domain.commands import (
    CHANNELS,
    EVENT_TYPES,
    CancelOrder,
    CapturePayment,
    FailPayment,
    IssueRefund,
    NoteOrderStatus,
    PlaceOrder,
    SendPayout,
    parse_command,
    parse_identifier,
    parse_timestamp,
)
from ledger.domain.errors import ValidationError

AT = "2026-11-30T10:00:00+08:00"

#: A valid body of every type a client may post, and its required fields.
VALID: dict[str, dict[str, Any]] = {
    "order.placed": {
        "seller_id": "s-1",
        "order_id": "o-1",
        "channel": "qris",
        "amount": "150000",
    },
    "order.cancelled": {"order_id": "o-1", "channel": "shopee"},
    "payment.captured": {
        "order_id": "o-1",
        "channel": "qris",
        "amount": "150000.00",
        "gateway": "midtrans",
        "gateway_ref": "pay-1",
        "fee": "1050",
    },
    "payment.failed": {
        "order_id": "o-1",
        "channel": "qris",
        "gateway": "midtrans",
        "gateway_ref": "pay-1",
    },
    "refund.issued": {
        "order_id": "o-1",
        "channel": "qris",
        "amount": 50000,
        "gateway": "xendit",
        "gateway_ref": "rf-1",
    },
    "payout.sent": {"seller_id": "s-1", "amount": "10000", "reference": "trf-1"},
}

REQUIRED: dict[str, list[str]] = {
    "order.placed": ["seller_id", "order_id", "channel", "amount"],
    "order.cancelled": ["order_id", "channel"],
    "payment.captured": ["order_id", "channel", "amount", "gateway", "gateway_ref"],
    "payment.failed": ["order_id", "channel", "gateway", "gateway_ref"],
    "refund.issued": ["order_id", "channel", "amount", "gateway", "gateway_ref"],
    "payout.sent": ["seller_id", "amount", "reference"],
}

#: Malformed values per field: each must be refused naming that field.
MALFORMED: dict[str, list[Any]] = {
    "seller_id": ["", "a b", "x" * 65, "toko/1", 12, True, ["s"], {"id": "s"}],
    "order_id": ["", "a b", "x" * 65, "o#1", 12, False, ["o"]],
    "channel": ["ebay", "QRIS", "", 1, ["qris"], {"qris": 1}],
    "amount": [1.5, 1e5, "1e5", "-1", "+1", " 1", "1.001", "01", "0", True, [], {}],
    "gateway": ["", "mid trans", "x" * 65, 7],
    "gateway_ref": ["", "has space", "x" * 201, 42, ["r"]],
    "reference": ["", "has space", "x" * 201, 42],
}


def body(kind: str, **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"idempotency_key": "key-1", "type": kind, "occurred_at": AT}
    out.update(VALID[kind])
    for name, value in changes.items():
        if value is _DROP:
            out.pop(name, None)
        else:
            out[name] = value
    return out


_DROP = object()


def refused(raw: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_command(raw)
    return info.value


# -- timestamps ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-11-30T10:00:00+08:00", datetime(2026, 11, 30, 2, 0, tzinfo=UTC)),
        ("2026-11-30T02:00:00Z", datetime(2026, 11, 30, 2, 0, tzinfo=UTC)),
        ("2026-11-30T02:00:00+00:00", datetime(2026, 11, 30, 2, 0, tzinfo=UTC)),
        ("2026-11-30T17:30:00-05:30", datetime(2026, 11, 30, 23, 0, tzinfo=UTC)),
        ("2026-11-30T02:00:00.123456Z", datetime(2026, 11, 30, 2, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_timestamps_with_an_offset_are_accepted(text: str, utc: datetime) -> None:
    moment = parse_timestamp(text)
    assert moment.tzinfo is not None
    assert moment == utc


def test_the_offset_is_kept_not_normalised_away() -> None:
    moment = parse_timestamp("2026-11-30T10:00:00+08:00")
    assert moment.utcoffset() == timedelta(hours=8)
    assert moment.tzinfo == timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-30T10:00:00",  # naive
        "2026-11-30T10:00:00.5",  # naive with a fraction
        "2026-11-30",  # date only
        "2026-11-30+08:00",
        "10:00:00+08:00",  # time only
        "2026-13-01T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-11-30T25:00:00Z",
        "2026-11-30T10:00:00+25:00",
        "yesterday",
        "",
        "Z",
        "2026-11-30T10:00:00+08:00" + " " * 30,
        1764468000,
        1764468000.0,
        None,
        True,
        ["2026-11-30T10:00:00Z"],
    ],
)
def test_timestamps_without_offset_or_malformed_are_refused(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_timestamp(value)
    assert info.value.field == "occurred_at"


@pytest.mark.parametrize(
    "value",
    [
        "20261130T100000+0800",  # ISO 8601 basic format
        "2026-11-30T10:00:00+0800",  # offset without its colon
        "2026-11-30T10:00:00+08:00:30",  # offset with seconds
        "2026-W48-1T10:00:00+08:00",  # ISO week date
        "2026-11-30T10:00+08:00",  # no seconds
        "2026-11-30T10+08:00",  # hour only
        "2026-11-30T10:00:00,5+08:00",  # decimal comma
    ],
)
def test_iso_8601_forms_that_are_not_rfc_3339_are_refused(value: str) -> None:
    """CONTRACT 1 says RFC 3339, a strict profile of ISO 8601 (section 5.6)."""
    with pytest.raises(ValidationError) as info:
        parse_timestamp(value)
    assert info.value.field == "occurred_at"


def test_rfc_3339_spellings_a_space_and_lowercase_are_accepted() -> None:
    for text in ("2026-11-30 02:00:00Z", "2026-11-30t02:00:00z"):
        assert parse_timestamp(text) == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def test_timestamp_errors_name_the_field_they_were_given() -> None:
    with pytest.raises(ValidationError) as info:
        parse_timestamp("2026-11-30T10:00:00", "as_of")
    assert info.value.field == "as_of"


# -- identifiers --------------------------------------------------------------------


def test_identifiers_are_1_to_64_of_the_allowed_characters() -> None:
    for good in ("a", "A-z_0.9:x", "x" * 64, "INV-2026-11-30:0001", "...", ".a", "a.."):
        assert parse_identifier(good, "order_id") == good
    # "." and ".." are path segments that mean "here" and "up", never a record
    for bad in ("", "x" * 65, "a b", "é", "a/b", "a\x00b", None, 1, ".", ".."):
        with pytest.raises(ValidationError) as info:
            parse_identifier(bad, "order_id")
        assert info.value.field == "order_id"


# -- commands: the valid forms ---------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(VALID))
def test_every_type_parses_from_its_required_fields(kind: str) -> None:
    command = parse_command(body(kind))
    assert command.type == kind
    assert command.idempotency_key == "key-1"
    assert command.occurred_at == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    assert command.currency == "IDR"


def test_parsed_values_are_typed_and_in_minor_units() -> None:
    placed = parse_command(body("order.placed"))
    assert (placed.seller_id, placed.order_id, placed.channel, placed.amount_minor) == (
        "s-1",
        "o-1",
        "qris",
        15_000_000,
    )
    captured = parse_command(body("payment.captured"))
    assert (captured.amount_minor, captured.fee_minor) == (15_000_000, 105_000)
    assert (captured.gateway, captured.gateway_ref) == ("midtrans", "pay-1")
    refund = parse_command(body("refund.issued"))
    assert refund.amount_minor == 5_000_000
    failed = parse_command(body("payment.failed"))
    assert not hasattr(failed, "amount_minor")  # a failed payment moves no money
    payout = parse_command(body("payout.sent", currency="USD"))
    assert (payout.amount_minor, payout.currency, payout.reference) == (1_000_000, "USD", "trf-1")


def test_every_contract_channel_is_accepted() -> None:
    assert CHANNELS == {
        "qris", "shopee", "tokopedia", "lazada", "tiktok",
        "whatsapp", "instagram", "website", "pos", "other",
    }  # fmt: skip
    for channel in CHANNELS:
        assert parse_command(body("order.placed", channel=channel)).channel == channel


def test_fee_is_optional_may_be_zero_and_may_not_exceed_the_amount() -> None:
    assert parse_command(body("payment.captured", fee=_DROP)).fee_minor == 0
    assert parse_command(body("payment.captured", fee="0")).fee_minor == 0
    error = refused(body("payment.captured", fee="150000.01"))
    assert error.field == "fee"
    for bad in (1.5, "-1", "1e3", True):
        assert refused(body("payment.captured", fee=bad)).field == "fee"


def test_the_fingerprint_ignores_key_order_but_not_values() -> None:
    a = parse_command(body("order.placed"))
    reordered = dict(reversed(list(body("order.placed").items())))
    assert parse_command(reordered).fingerprint == a.fingerprint
    assert parse_command(body("order.placed", amount="150001")).fingerprint != a.fingerprint


# -- commands: what is refused, and which field is named ------------------------------


@pytest.mark.parametrize(
    ("kind", "name"), [(kind, name) for kind, names in REQUIRED.items() for name in names]
)
def test_a_missing_required_field_is_named(kind: str, name: str) -> None:
    assert refused(body(kind, **{name: _DROP})).field == name
    assert refused(body(kind, **{name: None})).field == name


@pytest.mark.parametrize(
    ("kind", "name", "value"),
    [
        (kind, name, value)
        for kind, names in REQUIRED.items()
        for name in names
        for value in MALFORMED[name]
    ],
    ids=lambda v: repr(v)[:30] if not isinstance(v, str) else v[:30],
)
def test_a_malformed_field_is_named(kind: str, name: str, value: Any) -> None:
    assert refused(body(kind, **{name: value})).field == name


@pytest.mark.parametrize("kind", sorted(VALID))
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("idempotency_key", _DROP),
        ("idempotency_key", None),
        ("idempotency_key", ""),
        ("idempotency_key", "k" * 201),
        ("idempotency_key", 12345),
        ("idempotency_key", ["k"]),
        ("occurred_at", _DROP),
        ("occurred_at", None),
        ("occurred_at", "2026-11-30T10:00:00"),
        ("occurred_at", "2026-11-30"),
        ("occurred_at", 1764468000),
        ("currency", "XXX"),
        ("currency", "idr"),
        ("currency", 360),
        ("metadata", "note"),
        ("metadata", ["a"]),
        ("metadata", 1),
        ("metadata", {"note": "x" * 4097}),
    ],
    ids=lambda v: repr(v)[:30] if not isinstance(v, str) else v[:30],
)
def test_common_fields_are_checked_for_every_type(kind: str, name: str, value: Any) -> None:
    assert refused(body(kind, **{name: value})).field == name


@pytest.mark.parametrize(
    "value",
    [
        _DROP,
        None,
        "order.shipped",
        "seller.registered",  # internal types are recorded by their own endpoints
        "suspense.recorded",
        "ORDER.PLACED",
        1,
        ["order.placed"],
        {"name": "order.placed"},
    ],
    ids=repr,
)
def test_unknown_or_malformed_type_is_named(value: Any) -> None:
    assert refused(body("order.placed", type=value)).field == "type"


def test_idempotency_key_of_200_characters_and_small_metadata_are_accepted() -> None:
    command = parse_command(body("order.placed", idempotency_key="k" * 200, metadata={"a": 1}))
    assert command.idempotency_key == "k" * 200
    assert command.metadata == {"a": 1}


@pytest.mark.parametrize("raw", [None, [], "order.placed", 1, 1.5, True, [body("order.placed")]])
def test_a_non_object_is_refused(raw: object) -> None:
    error = refused(raw)
    assert error.code == "validation_error"


def test_client_commands_may_not_use_gateway_only_forms() -> None:
    """Without ``gateway_facts`` an order is named by channel and id, never by a payment."""
    assert refused(body("payment.captured", channel=_DROP)).field == "channel"
    refund = body("refund.issued", order_id=_DROP, channel=_DROP, payment_ref="pay-1")
    assert refused(refund).field == "order_id"


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("2000-01-01T00:00:00Z", True),
        ("1999-12-31T23:59:59.999999Z", False),
        ("2999-12-31T23:59:59.999999Z", True),  # the whole last day counts
        ("2999-12-31T23:59:59+00:00", True),
        ("3000-01-01T00:00:00Z", False),
        ("3000-01-01T07:00:00+08:00", True),  # 2999-12-31T23:00Z
    ],
)
def test_timestamps_lie_between_2000_01_01_and_2999_12_31_inclusive(
    text: str, accepted: bool
) -> None:
    if accepted:
        assert parse_timestamp(text).year in (2000, 2999, 3000)
    else:
        with pytest.raises(ValidationError, match="between 2000-01-01 and 2999-12-31"):
            parse_timestamp(text)


# -- commands as types ---------------------------------------------------------------------

CLASS_OF = {
    "order.placed": PlaceOrder,
    "order.cancelled": CancelOrder,
    "order.status_noted": NoteOrderStatus,
    "payment.captured": CapturePayment,
    "payment.failed": FailPayment,
    "refund.issued": IssueRefund,
    "payout.sent": SendPayout,
}


def test_each_type_parses_into_its_own_class_with_only_its_fields() -> None:
    bodies = {kind: body(kind) for kind in VALID} | {
        "order.status_noted": body("order.cancelled") | {"type": "order.status_noted",
                                                         "status": "SHIPPED"},
    }  # fmt: skip
    assert set(bodies) == EVENT_TYPES == set(CLASS_OF)
    for kind, raw in bodies.items():
        command = parse_command(raw)
        assert type(command) is CLASS_OF[kind]
        assert command.type == kind
    # a type holds no field it cannot have
    assert not hasattr(parse_command(body("order.placed")), "gateway")
    assert not hasattr(parse_command(body("payout.sent")), "order_id")
    assert not hasattr(parse_command(body("order.cancelled")), "amount_minor")


def test_every_command_type_has_a_handler() -> None:
    from ledger.app.handlers import HANDLERS

    assert set(HANDLERS) == set(CLASS_OF.values())


def test_a_gateway_payout_checks_its_payment_ref_like_every_gateway_fact() -> None:
    """The typed parser kept the wide one's order of checks: with gateway facts
    admitted, a malformed ``payment_ref`` is refused on a payout too."""
    raw = body("payout.sent", payment_ref="a b")
    assert parse_command(raw).type == "payout.sent"  # ignored from a client
    with pytest.raises(ValidationError) as info:
        parse_command(raw, gateway_facts=True)
    assert info.value.field == "payment_ref"
