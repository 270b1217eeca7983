"""Balances as of a time, and as the ledger knew them then (CONTRACT section 4 and 7).

A scripted history with late events: day D's first events are recorded,
then an instant K is taken, then more events that *happened* on day D (and
after it) arrive. ``?as_of=<end of D>`` counts the late ones (it goes by
``occurred_at``); adding ``&known_at=K`` does not (only events with
``recorded_at`` up to K). ``omniledger replay`` prints the same numbers.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from .conftest import CliRunner, History, Http

END_OF_D = "2026-12-01T23:59:59.999999+08:00"
FAR = "2030-01-01T00:00:00Z"

MONEY = ("pending", "available", "captured_total", "refunded_total", "fees_total", "paid_out_total")


def query(as_of: str | None = None, known_at: str | None = None, **extra: str) -> str:
    params = {k: v for k, v in {"as_of": as_of, "known_at": known_at, **extra}.items() if v}
    return "?" + urllib.parse.urlencode(params)


async def balance(http: Http, seller: str, q: str = "", headers: Any = None) -> dict[str, Any]:
    status, body = await http.get(f"/v1/sellers/{seller}/balance{q}", headers=headers)
    assert status == 200, body
    return body


def money(body: dict[str, Any]) -> dict[str, str]:
    return {name: body[name] for name in MONEY}


async def scripted(history: History) -> dict[str, Any]:
    t = history.tag
    s, other = f"s-{t}", f"other-{t}"
    await history.seller(s)
    await history.seller(other)
    await history.place(s, f"o1-{t}", "100000", "2026-12-01T09:00:00+08:00")
    known_capture = await history.capture(
        f"o1-{t}", "100000", "2026-12-01T09:05:00+08:00", fee="700"
    )
    await history.place(s, f"o2-{t}", "50000", "2026-12-01T10:00:00+08:00")
    last_known_of_d = await history.place(s, f"o5-{t}", "20000", "2026-12-01T10:30:00+08:00")
    await history.place(s, f"o3-{t}", "30000", "2026-12-02T09:00:00+08:00")  # after D
    await history.place(other, f"x1-{t}", "77000", "2026-12-01T09:00:00+08:00")
    await history.capture(f"x1-{t}", "77000", "2026-12-01T09:10:00+08:00", fee="500")

    await asyncio.sleep(0.05)
    k = datetime.now(UTC)
    await asyncio.sleep(0.05)

    late_capture = await history.capture(f"o2-{t}", "50000", "2026-12-01T11:00:00+08:00", fee="350")
    await history.refund(f"o1-{t}", "20000", "2026-12-01T12:00:00+08:00")
    await history.cancel(f"o5-{t}", "2026-12-01T13:00:00+08:00")
    payout = await history.payout(s, "30000", END_OF_D)  # the last instant of D: included
    await history.capture(f"o3-{t}", "30000", "2026-12-02T09:30:00+08:00", fee="210")
    await history.place(s, f"o4-{t}", "10000", "2026-12-01T16:00:00Z")  # 00:00 of D+1 in WITA
    await history.refund(f"x1-{t}", "7000", "2026-12-01T14:00:00+08:00")
    return {
        "seller": s,
        "other": other,
        "k": k,
        "known_capture": known_capture.position,
        "last_known_of_d": last_known_of_d.position,
        "late_capture": late_capture.position,
        "payout": payout.position,
    }


EXPECTED_END_OF_D = {  # everything that happened on D, whenever it was recorded
    "pending": "0.00",
    "available": "98950.00",  # 150000 - 1050 - 20000 - 30000
    "captured_total": "150000.00",
    "refunded_total": "20000.00",
    "fees_total": "1050.00",
    "paid_out_total": "30000.00",
}
EXPECTED_END_OF_D_KNOWN_AT_K = {  # what the ledger knew of D at K
    "pending": "70000.00",  # o2 50000 not yet paid, o5 20000 not yet cancelled
    "available": "99300.00",  # 100000 - 700
    "captured_total": "100000.00",
    "refunded_total": "0.00",
    "fees_total": "700.00",
    "paid_out_total": "0.00",
}


async def test_as_of_counts_late_events_and_known_at_does_not(history: History, http: Http) -> None:
    h = await scripted(history)
    k = h["k"].isoformat()

    as_of = await balance(http, h["seller"], query(END_OF_D))
    assert money(as_of) == EXPECTED_END_OF_D
    assert as_of["as_of_position"] == h["payout"]

    known = await balance(http, h["seller"], query(END_OF_D, k))
    assert money(known) == EXPECTED_END_OF_D_KNOWN_AT_K
    assert known["as_of_position"] == h["last_known_of_d"]  # o5 placed: the last money event
    assert datetime.fromisoformat(known["known_at"]) == h["k"]

    # the other seller's events never leak in, and it has its own numbers
    other = await balance(http, h["other"], query(END_OF_D, k))
    assert money(other)["available"] == "76500.00"
    other = await balance(http, h["other"], query(END_OF_D))
    assert money(other)["available"] == "69500.00"


async def test_far_future_as_of_equals_the_live_balance(history: History, http: Http) -> None:
    h = await scripted(history)
    for seller in (h["seller"], h["other"]):
        live = await balance(http, seller)
        replayed = await balance(http, seller, query(FAR))
        assert money(replayed) == money(live), seller
        assert replayed["as_of_position"] == live["as_of_position"]
    # pending: o4 (placed 00:00 of D+1) is open; o3 is paid
    assert (await balance(http, h["seller"], query(FAR)))["pending"] == "10000.00"


async def test_known_at_boundary_is_inclusive_to_the_microsecond(
    history: History, http: Http
) -> None:
    h = await scripted(history)
    events = {e["position"]: e for e in await http.events()}
    recorded = datetime.fromisoformat(events[h["late_capture"]]["recorded_at"])
    at = await balance(http, h["seller"], query(END_OF_D, recorded.isoformat()))
    before = await balance(
        http, h["seller"], query(END_OF_D, (recorded - timedelta(microseconds=1)).isoformat())
    )
    assert at["captured_total"] == "150000.00"
    assert before["captured_total"] == "100000.00"
    # the same instant written with another offset is the same instant
    in_wita = recorded.astimezone(datetime.fromisoformat("2026-01-01T00:00:00+08:00").tzinfo)
    assert money(await balance(http, h["seller"], query(END_OF_D, in_wita.isoformat()))) == money(
        at
    )


async def test_as_of_boundary_by_occurred_at(history: History, http: Http) -> None:
    h = await scripted(history)
    # one microsecond before the payout's occurred_at: it is not counted yet
    before = await balance(http, h["seller"], query("2026-12-01T23:59:59.999998+08:00"))
    assert before["paid_out_total"] == "0.00"
    # o4 at 16:00Z sits exactly on the next local midnight
    assert (await balance(http, h["seller"], query("2026-12-01T16:00:00Z")))[
        "pending"
    ] == "10000.00"
    # before anything happened: zeros for a registered seller
    early = await balance(http, h["seller"], query("2026-01-01T00:00:00+08:00"))
    assert set(money(early).values()) == {"0.00"}


async def test_replay_cli_prints_the_same_numbers(
    history: History, http: Http, cli: CliRunner
) -> None:
    h = await scripted(history)
    k = h["k"].isoformat()
    for as_of, known_at in ((END_OF_D, None), (END_OF_D, k), (FAR, None), (FAR, k)):
        args = ["replay", "--as-of", as_of, "--seller", h["seller"]]
        if known_at:
            args += ["--known-at", known_at]
        run = await cli(*args)
        assert run.rc == 0, run.err
        printed = run.json()
        assert printed["as_of"] == as_of and printed["known_at"] == known_at
        assert len(printed["balances"]) == 1
        served = await balance(http, h["seller"], query(as_of, known_at))
        shown = printed["balances"][0]
        assert shown["seller_id"] == h["seller"] and shown["currency"] == "IDR"
        assert money(shown) == money(served), (as_of, known_at)
        assert shown["as_of_position"] == served["as_of_position"]
    assert (
        money(
            (await cli("replay", "--as-of", END_OF_D, "--seller", h["seller"])).json()["balances"][
                0
            ]
        )
        == EXPECTED_END_OF_D
    )


async def test_replay_cli_without_seller_lists_every_seller(
    history: History, http: Http, cli: CliRunner
) -> None:
    h = await scripted(history)
    run = await cli("replay", "--as-of", END_OF_D, "--known-at", h["k"].isoformat())
    assert run.rc == 0, run.err
    shown = {b["seller_id"]: money(b) for b in run.json()["balances"]}
    assert shown == {
        h["seller"]: EXPECTED_END_OF_D_KNOWN_AT_K,
        h["other"]: money(await balance(http, h["other"], query(END_OF_D, h["k"].isoformat()))),
    }


@pytest.mark.parametrize(
    "args",
    [
        ["replay", "--as-of", "2026-12-01T23:59:59"],  # no offset
        ["replay", "--as-of", "yesterday"],
        ["replay", "--as-of", "2026-12-01T23:59:59Z", "--known-at", "2026-12-01"],
    ],
)
async def test_replay_cli_refuses_bad_times(args: list[str], cli: CliRunner) -> None:
    run = await cli(*args)
    assert run.rc == 2, (run.out, run.err)
    assert "omniledger:" in run.err and "Traceback" not in run.err


@pytest.mark.parametrize(
    "q",
    [
        query("2026-12-01T23:59:59"),  # no offset
        query("not-a-time"),
        query(END_OF_D, "2026-12-01"),
        query(known_at="2026-12-01T00:00:00Z"),  # known_at alone
    ],
)
async def test_bad_times_are_422(q: str, history: History, http: Http) -> None:
    seller = f"s-{history.tag}"
    await history.seller(seller)
    status, body = await http.get(f"/v1/sellers/{seller}/balance{q}")
    assert status == 422, body
    assert body["error"]["code"] == "validation_error"


async def test_who_may_travel(history: History, http: Http) -> None:
    h = await scripted(history)
    q = query(END_OF_D, h["k"].isoformat())
    auditor = await http.key("auditor")
    own = await http.key("seller", h["seller"])
    assert (
        money(await balance(http, h["seller"], q, headers=auditor)) == EXPECTED_END_OF_D_KNOWN_AT_K
    )
    assert money(await balance(http, h["seller"], q, headers=own)) == EXPECTED_END_OF_D_KNOWN_AT_K
    status, body = await http.get(f"/v1/sellers/{h['other']}/balance{q}", headers=own)
    assert status == 403, body
    status, body = await http.get("/v1/sellers/nobody-here/balance" + query(END_OF_D))
    assert status == 404, body
