"""Rupiah as Indonesians write it, the language a browser gets, the city's day (no I/O)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from dasbor.i18n import choose_language, days_back, local_today, money, parse_rupiah, translate
from ledger.domain.errors import ValidationError


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("1500000.00", "Rp 1.500.000"),
        ("0.00", "Rp 0"),
        ("999.00", "Rp 999"),
        ("1000.50", "Rp 1.000,50"),
        ("-2500.00", "-Rp 2.500"),
        ("123456789012.00", "Rp 123.456.789.012"),
        (None, "-"),
    ],
)
def test_rupiah_has_dots_between_thousands(amount: str | None, shown: str) -> None:
    assert money(amount) == shown


def test_another_currency_keeps_its_code() -> None:
    assert money("10.00", "USD") == "USD 10"


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("150000", "150000.00"),
        ("150.000", "150000.00"),
        ("Rp 150.000", "150000.00"),
        ("Rp. 1.500.000,5", "1500000.50"),
        ("  25000 ", "25000.00"),
    ],
)
def test_amounts_typed_the_indonesian_way(typed: str, canonical: str) -> None:
    assert parse_rupiah(typed) == canonical


@pytest.mark.parametrize("typed", ["", "abc", "150,000.00", "1.50.000", "-5", "1e9", "15.00"])
def test_amounts_that_are_not_rupiah_are_refused(typed: str) -> None:
    with pytest.raises(ValidationError) as e:
        parse_rupiah(typed)
    assert e.value.field == "amount"


@pytest.mark.parametrize(
    ("cookie", "header", "language"),
    [
        (None, None, "id"),
        (None, "en-US,en;q=0.9", "en"),
        (None, "id-ID,id;q=0.9,en;q=0.8", "id"),
        (None, "en;q=0.5,id;q=0.9", "id"),
        (None, "fr-FR,de;q=0.9", "id"),
        (None, "en;q=0", "id"),
        (None, "en;q=banana", "id"),
        ("en", "id-ID", "en"),
        ("id", "en-US", "id"),
        ("xx", "en-US", "en"),
    ],
)
def test_bahasa_unless_english_is_asked_for(
    cookie: str | None, header: str | None, language: str
) -> None:
    assert choose_language(cookie, header) == language


def test_words_without_an_english_entry_stay_as_they_are() -> None:
    assert translate("en", "Saldo") == "Balance"
    assert translate("id", "Saldo") == "Saldo"
    assert translate("en", "kata baru") == "kata baru"


def test_the_day_is_makassars_not_utcs() -> None:
    late_utc = datetime(2026, 11, 30, 17, 30, tzinfo=UTC)  # 01:30 on 1 December in Makassar
    assert local_today(ZoneInfo("Asia/Makassar"), late_utc) == date(2026, 12, 1)
    assert days_back(date(2026, 12, 1), 3) == [date(2026, 11, 29), date(2026, 11, 30),
                                               date(2026, 12, 1)]  # fmt: skip


def test_moments_are_shown_in_makassar_time() -> None:
    from dasbor.i18n import local_time

    zone = ZoneInfo("Asia/Makassar")
    assert local_time("2026-11-30T17:30:00+00:00", zone) == "01/12/2026 01:30"
    assert local_time("2026-11-30T17:30:00Z", zone) == "01/12/2026 01:30"
    assert local_time(datetime(2026, 11, 30, 17, 30, tzinfo=UTC), zone) == "01/12/2026 01:30"
    assert local_time(None, zone) == "-"
    assert local_time("not a time", zone) == "not a time"
