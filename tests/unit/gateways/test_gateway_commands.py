"""``gateways._commands``: the fallback command for a fact ``parse_command`` refused."""

from __future__ import annotations

import pytest

from gateways._commands import fallback_command, key_of
from ledger.domain.errors import ValidationError

FACT = {
    "idempotency_key": "xendit:payment:qrpy_1",
    "type": "payment.captured",
    "occurred_at": "2026-11-30T10:00:00+08:00",
    "order_id": "INV/2026/1",
    "amount": "10000.00",
    "currency": "IDR",
}


def test_a_fact_the_ledger_cannot_hold_still_gives_what_suspense_needs() -> None:
    cause = ValidationError("order_id has a character outside the alphabet", field="order_id")
    assert key_of(fallback_command(FACT, cause)) == "xendit:payment:qrpy_1"


@pytest.mark.parametrize(
    "broken", [{"occurred_at": "yesterday"}, {"currency": "rupiah"}, {"amount": "lots"}]
)
def test_a_fact_too_broken_to_keep_is_refused_with_its_first_error(
    broken: dict[str, str],
) -> None:
    cause = ValidationError("order_id has a character outside the alphabet", field="order_id")
    with pytest.raises(ValidationError) as caught:
        fallback_command(FACT | broken, cause)
    assert caught.value is cause
