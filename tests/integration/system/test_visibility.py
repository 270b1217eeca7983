"""Issue 3, end to end through a running ``omniledger up``: an event written over HTTP
shows in the seller's recap and the city recap of its *local* day, the read
models report lag 0 once caught up, and a seller key reads only its own recaps.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.integration.system.conftest import PROJECTIONS, Http

LATE_EVENING_UTC = "2026-11-30T17:30:00Z"  # 2026-12-01 01:30 in Makassar (WITA, UTC+8)
SAME_DAY_UTC = "2026-11-30T15:59:59Z"  # 2026-11-30 23:59:59 WITA


async def _post(http: Http, **fields: Any) -> dict[str, Any]:
    fields.setdefault("idempotency_key", uuid.uuid4().hex)
    status, body = await http.post("/v1/events", fields)
    assert status == 201, body
    return body  # type: ignore[no-any-return]


async def _until(http: Http, check: Any, timeout_s: float = 10.0) -> float:
    """Polls ``check()`` (async, returns truthy when done); returns seconds waited."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    last: list[Any] = []
    while not await check(last):
        if loop.time() - start > timeout_s:
            raise AssertionError(
                f"not visible within {timeout_s} s; last seen: {last[-1:]}\n"
                f"--- server log (tail)\n{http.server_log()}"
            )
        await asyncio.sleep(0.01)
    return loop.time() - start


async def test_an_evening_event_reaches_the_next_local_days_recaps(http: Http) -> None:
    tag = uuid.uuid4().hex[:6]
    mine, other = f"vis-a-{tag}", f"vis-b-{tag}"
    await http.seller(mine, district="Tamalate")
    await http.seller(other, district="Panakkukang")

    await _post(http, type="order.placed", seller_id=mine, order_id=f"early-{tag}",
                channel="shopee", amount="50000", occurred_at=SAME_DAY_UTC)  # fmt: skip
    await _post(http, type="order.placed", seller_id=mine, order_id=f"late-{tag}",
                channel="qris", amount="150000", occurred_at=LATE_EVENING_UTC)  # fmt: skip
    last = await _post(http, type="payment.captured", order_id=f"late-{tag}", channel="qris",
                       amount="150000", fee="1050", gateway="midtrans",
                       gateway_ref=f"pay-{tag}", occurred_at=LATE_EVENING_UTC)  # fmt: skip
    await _post(http, type="order.placed", seller_id=other, order_id=f"other-{tag}",
                channel="qris", amount="20000", occurred_at=LATE_EVENING_UTC)  # fmt: skip

    december_first = {
        "date": "2026-12-01", "channel": "qris", "currency": "IDR", "orders": 1,
        "order_value": "150000.00", "payments": 1, "captured": "150000.00", "refunds": 0,
        "refunded": "0.00", "fees": "1050.00", "net": "148950.00",
    }  # fmt: skip

    async def seller_recap_shows_it(seen: list[Any]) -> bool:
        status, body = await http.get(f"/v1/sellers/{mine}/recaps?from=2026-12-01&to=2026-12-01")
        seen.append((status, body))
        return status == 200 and body["recaps"] == [december_first]

    waited = await _until(http, seller_recap_shows_it)
    assert waited < 5.0, f"the recap took {waited:.2f} s to show the event"

    status, body = await http.get(f"/v1/sellers/{mine}/recaps?from=2026-11-30&to=2026-12-01")
    assert status == 200, body
    assert [(r["date"], r["channel"], r["orders"]) for r in body["recaps"]] == [
        ("2026-11-30", "shopee", 1),
        ("2026-12-01", "qris", 1),
    ]

    async def city_shows_it(seen: list[Any]) -> bool:
        status, body = await http.get("/v1/recaps/daily?date=2026-12-01")
        seen.append((status, body))
        return status == 200 and body["active_sellers"] == 2

    await _until(http, city_shows_it)
    status, city = await http.get("/v1/recaps/daily?date=2026-12-01")
    assert status == 200, city
    assert city["date"] == "2026-12-01"
    [qris] = city["channels"]
    assert qris == {k: v for k, v in december_first.items() if k != "date"} | {
        "orders": 2, "order_value": "170000.00",
    }  # fmt: skip
    districts = {d["district"]: d for d in city["districts"]}
    assert set(districts) == {"Tamalate", "Panakkukang"}
    assert districts["Tamalate"]["active_sellers"] == 1
    assert districts["Tamalate"]["captured"] == "150000.00"
    assert districts["Panakkukang"]["order_value"] == "20000.00"
    status, nov = await http.get("/v1/recaps/daily?date=2026-11-30")
    assert status == 200, nov
    assert [(c["channel"], c["orders"]) for c in nov["channels"]] == [("shopee", 1)]

    head = await http.caught_up()
    assert head >= last["position"]
    status, body = await http.get("/v1/projections")
    assert status == 200, body
    rows = {p["name"]: p for p in body["projections"]}
    assert set(PROJECTIONS) <= set(rows)
    for name in PROJECTIONS:
        assert rows[name]["position"] == head, rows[name]
        assert rows[name]["lag_events"] == 0, rows[name]
        assert rows[name]["lag_seconds"] == 0, rows[name]

    status, balance = await http.get(f"/v1/sellers/{mine}/balance")
    assert status == 200, balance
    assert balance["available"] == "148950.00"
    assert balance["pending"] == "50000.00"
    assert balance["as_of_position"] == head


async def test_a_seller_key_reads_only_its_own_recaps(http: Http) -> None:
    tag = uuid.uuid4().hex[:6]
    mine, other = f"own-a-{tag}", f"own-b-{tag}"
    await http.seller(mine)
    await http.seller(other)
    for seller in (mine, other):
        await _post(http, type="order.placed", seller_id=seller, order_id=f"o-{seller}",
                    channel="website", amount="1000", occurred_at=LATE_EVENING_UTC)  # fmt: skip
    await http.caught_up()
    seller_key = await http.key("seller", mine)
    auditor_key = await http.key("auditor")
    recaps = "/v1/sellers/{}/recaps?from=2026-12-01&to=2026-12-01"

    status, body = await http.get(recaps.format(mine), headers=seller_key)
    assert status == 200, body
    assert [r["orders"] for r in body["recaps"]] == [1]
    status, body = await http.get(recaps.format(other), headers=seller_key)
    assert status == 403, body
    assert body["error"]["code"]
    status, body = await http.get(f"/v1/sellers/{other}/balance", headers=seller_key)
    assert status == 403, body
    status, body = await http.get(f"/v1/sellers/{mine}/balance", headers=seller_key)
    assert status == 200, body
    for path in ("/v1/recaps/daily?date=2026-12-01", "/v1/projections"):
        status, body = await http.get(path, headers=seller_key)
        assert status == 403, (path, body)

    for seller in (mine, other):
        status, body = await http.get(recaps.format(seller), headers=auditor_key)
        assert status == 200, body
    status, body = await http.get("/v1/projections", headers=auditor_key)
    assert status == 200, body
    status, body = await http.get(recaps.format(mine), headers={"Authorization": "Bearer nope"})
    assert status == 401, body
