"""The registry fold: a row per seller, pending until curated, and its certificates."""

from __future__ import annotations

from typing import Any

import pytest

from projections.envelope import PoisonMessage
from projections.registry import Curated, Registered, SellerEntry, fold, parse
from tests.unit.projections.log_builder import LogBuilder


def curated(log: LogBuilder, seller_id: str, status: str, *kinds: str) -> dict[str, Any]:
    certs = [{"kind": k, "number": f"{k}-1"} for k in kinds]
    return log.add("seller.curated", {"seller_id": seller_id, "status": status,
                                      "certifications": certs})  # fmt: skip


def test_parse_reads_registrations_and_curations_and_ignores_the_rest() -> None:
    log = LogBuilder()
    reg = log.add("seller.registered", {"seller_id": "a", "name": "Toko A", "district": "Wajo",
                                        "nib": "1234", "channels": {}})  # fmt: skip
    assert parse(reg) == Registered(1, "a", "Toko A", "Wajo", True)
    assert parse(log.seller("b")) == Registered(2, "b", "Toko b", "", False)
    cur = curated(log, "a", "verified", "halal", "pirt", "future-kind")
    assert parse(cur) == Curated(3, "a", "verified", frozenset({"halal", "pirt"}))
    assert parse(log.order("a", "o1", "10.00")) is None
    bad = log.add("seller.curated", {"seller_id": "a", "status": "verified",
                                     "certifications": "halal"})  # fmt: skip
    with pytest.raises(PoisonMessage):
        parse(bad)


def test_a_seller_is_pending_until_curated_and_the_latest_curation_wins() -> None:
    facts = [
        Registered(1, "a", "Toko A", "Tamalate", False),
        Registered(2, "b", "Toko B", "Wajo", True),
        Curated(3, "a", "verified", frozenset({"halal", "nib"})),
        Curated(4, "a", "verified", frozenset({"pirt"})),
    ]
    rows = fold(facts, {})
    assert rows["b"].status == "pending"
    assert [rows["b"].has(k) for k in ("nib", "pirt", "halal", "sni", "hki")] == [
        True, False, False, False, False]  # fmt: skip
    # the second curation states the whole list: halal and nib are gone
    assert rows["a"].status == "verified"
    assert [rows["a"].has(k) for k in ("nib", "pirt", "halal")] == [False, True, False]
    assert rows["a"].last_position == 4


def test_a_registered_nib_outlives_a_curation_that_does_not_list_it() -> None:
    before = {"b": SellerEntry("Toko B", "Wajo", "pending", True, frozenset(), 2)}
    rows = fold([Curated(9, "b", "rejected", frozenset({"sni"}))], before)
    assert rows == {"b": SellerEntry("Toko B", "Wajo", "rejected", True, frozenset({"sni"}), 9)}
    assert rows["b"].has("nib") and rows["b"].has("sni")
    assert before["b"].status == "pending", "the fold does not change its input"


def test_an_unknown_sellers_curation_and_a_second_registration_are_skipped() -> None:
    first = Registered(1, "a", "Toko A", "Tamalate", False)
    rows = fold([first, Registered(2, "a", "Other", "Wajo", True),
                 Curated(3, "ghost", "verified", frozenset())], {})  # fmt: skip
    assert list(rows) == ["a"]
    assert (rows["a"].name, rows["a"].district) == ("Toko A", "Tamalate")
