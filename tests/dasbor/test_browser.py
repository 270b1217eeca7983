"""The pages in a real browser against ``omniledger up`` (issue 14, point 6).

One service for the module (real PostgreSQL, NATS, relay and projections as
``up`` runs them) and one headless Chromium at a phone's 390x844. Balances
on the page are compared with what the API answers; a recorded order must
show in the recap and the balance once the read models catch up; charts
must be drawn with the right number of series; no page may scroll sideways.
Screenshots of every page go to artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.js.errors
import pytest
from selenium.webdriver.common.by import By

from dasbor.i18n import money
from tests.dasbor.browser import (
    CHARTS_JS,
    chromium,
    has_no_horizontal_scroll,
    screenshot,
    wait_for,
)
from tests.integration.system.conftest import Deployment, Http, Service, free_loopback_port, run_cli
from tests.support.servers import fresh_database

BALANCE_FIELDS = ("available", "pending", "captured_total", "refunded_total", "fees_total",
                  "paid_out_total")  # fmt: skip


@pytest.fixture(scope="module")
async def service(
    pg_admin_dsn: str, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Service]:
    tag = uuid.uuid4().hex[:8]
    data_dir = tmp_path_factory.mktemp("dasbor") / "omniledger"
    data_dir.mkdir()
    async with fresh_database(pg_admin_dsn, "omniledger_dasbor") as dsn:
        d = Deployment(dsn=dsn, nats_url=nats_url, stream=f"LEDGER_DSB{tag}",
                       prefix=f"dsb{tag}", data_dir=data_dir)  # fmt: skip
        svc = Service(d, free_loopback_port(), data_dir.parent / "up.log")
        await svc.start()
        try:
            yield svc
        finally:
            await svc.stop()
            nc = await nats.connect(nats_url)
            try:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await nc.jetstream().delete_stream(d.stream)
            finally:
                await nc.close()


@pytest.fixture(scope="module")
async def http(service: Service) -> AsyncIterator[Http]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield Http(session, service.url, service.deployment.admin_key, service.log)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    browser = chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield browser
    finally:
        browser.quit()


async def caught_up(http: Http, timeout_s: float = 30.0) -> None:
    """Every read model (whichever ``up`` runs) at the log's head."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        status, body = await http.get("/v1/projections")
        assert status == 200, body
        if all(p["lag_events"] == 0 for p in body["projections"]):
            return
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


def sign_in(driver: Any, base: str, key: str) -> None:
    driver.delete_all_cookies()
    driver.get(f"{base}/dasbor/masuk")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button[type=submit]").click()
    wait_for(driver, "nav.tabs")


def shown_balance(driver: Any) -> dict[str, str]:
    return {f: driver.find_element(By.ID, f"b-{f}").text for f in BALANCE_FIELDS}


def charts(driver: Any) -> list[dict[str, Any]]:
    return list(driver.execute_script(CHARTS_JS))


def check_page(driver: Any, name: str) -> Path:
    ok, width, inner = has_no_horizontal_scroll(driver)
    assert ok, f"{name}: scrolls sideways at 390 px (scrollWidth {width}, innerWidth {inner})"
    return screenshot(driver, name)


async def _seller_with_a_key(http: Http, seller_id: str) -> str:
    await http.seller(seller_id, district="Tamalate")
    status, out = await http.post("/v1/keys", {"role": "seller", "seller_id": seller_id})
    assert status == 201, out
    return str(out["key"])


async def _gateway_sale(http: Http, seller_id: str, order_id: str, amount: str, fee: str) -> None:
    base = {"occurred_at": "2026-01-01T00:00:00Z"}
    for event in (
        {"type": "order.placed", "seller_id": seller_id, "order_id": order_id,
         "channel": "qris", "amount": amount},
        {"type": "payment.captured", "order_id": order_id, "channel": "qris", "amount": amount,
         "fee": fee, "gateway": "xendit", "gateway_ref": f"x-{order_id}"},
    ):  # fmt: skip
        base["occurred_at"] = datetime.now(UTC).isoformat()
        status, out = await http.post(
            "/v1/events", {**event, **base, "idempotency_key": uuid.uuid4().hex}
        )
        assert status == 201, out


async def test_a_seller_records_a_whatsapp_sale_and_sees_it(
    service: Service, http: Http, driver: Any
) -> None:
    seller = "toko-" + uuid.uuid4().hex[:6]
    key = await _seller_with_a_key(http, seller)
    await _gateway_sale(http, seller, "qr-1", "200000.00", "1400.00")
    await caught_up(http)

    sign_in(driver, service.url, key)
    assert driver.current_url.endswith(f"/dasbor/penjual/{seller}")
    status, api_balance = await http.get(f"/v1/sellers/{seller}/balance")
    assert status == 200, api_balance
    assert shown_balance(driver) == {f: money(api_balance[f]) for f in BALANCE_FIELDS}
    position = f"{api_balance['as_of_position']:,}".replace(",", ".")
    assert driver.find_element(By.ID, "as-of-position").text == position
    drawn = charts(driver)
    assert [c["series"] for c in drawn] == [4], drawn  # qris: gross, fees, net, refunds
    assert all(c["painted"] > 0 and c["labels"] == 30 for c in drawn), drawn
    check_page(driver, "seller-before")

    # the WhatsApp order no gateway reports, paid in cash, through the form
    driver.find_element(By.CSS_SELECTOR, "nav.tabs a[href$='/pesanan']").click()
    wait_for(driver, "#order-form")
    check_page(driver, "seller-orders-form")
    driver.find_element(By.CSS_SELECTOR, "#channel option[value=whatsapp]").click()
    driver.find_element(By.ID, "amount").send_keys("150.000")
    driver.find_element(By.ID, "paid_cash").click()
    driver.find_element(By.ID, "order-submit").click()
    assert "Tersimpan" in wait_for(driver, "#form-ok").text

    await caught_up(http)
    driver.refresh()
    orders = driver.find_elements(By.CSS_SELECTOR, "#orders li.order")
    assert any("whatsapp" in o.text and "Rp 150.000" in o.text for o in orders), [
        o.text for o in orders
    ]
    check_page(driver, "seller-orders")

    driver.find_element(By.CSS_SELECTOR, "nav.tabs a[href$='" + seller + "']").click()
    wait_for(driver, "#balance")
    status, after = await http.get(f"/v1/sellers/{seller}/balance")
    assert status == 200
    assert shown_balance(driver) == {f: money(after[f]) for f in BALANCE_FIELDS}
    assert after["captured_total"] == "350000.00", after
    rows = driver.find_elements(By.CSS_SELECTOR, "#recap-table tbody tr")
    assert any("whatsapp" in r.text and "Rp 150.000" in r.text for r in rows), [
        r.text for r in rows
    ]
    drawn = charts(driver)
    assert [c["series"] for c in drawn] == [4, 4], drawn  # qris and whatsapp
    assert all(c["painted"] > 0 for c in drawn), drawn
    check_page(driver, "seller")  # docs/dasbor-seller.png is a copy of this one

    driver.find_element(By.CSS_SELECTOR, "nav.tabs a[href$='/pencairan']").click()
    wait_for(driver, "#payouts")
    check_page(driver, "seller-payouts")


async def test_a_seller_cannot_open_another_sellers_page_by_url(
    service: Service, http: Http, driver: Any
) -> None:
    mine, theirs = "mine-" + uuid.uuid4().hex[:6], "theirs-" + uuid.uuid4().hex[:6]
    key = await _seller_with_a_key(http, mine)
    await http.seller(theirs)
    sign_in(driver, service.url, key)
    for path in ("", "/pesanan", "/pencairan"):
        driver.get(f"{service.url}/dasbor/penjual/{theirs}{path}")
        error = wait_for(driver, "#error")
        assert "403" in error.text, error.text
        assert not driver.find_elements(By.ID, "balance")
    driver.get(f"{service.url}/dasbor/kota")
    assert "403" in wait_for(driver, "#error").text
    check_page(driver, "seller-forbidden")


async def test_the_admin_sees_the_city_recap_and_the_curation_counts(
    service: Service, http: Http, driver: Any
) -> None:
    seller = "kota-" + uuid.uuid4().hex[:6]
    await _seller_with_a_key(http, seller)
    await _gateway_sale(http, seller, "qr-kota", "500000.00", "3500.00")
    await caught_up(http)
    sign_in(driver, service.url, service.deployment.admin_key)
    assert driver.current_url.endswith("/dasbor/kota")
    drawn = {c["id"]: c for c in charts(driver)}
    assert drawn["chart-active"]["series"] == 1
    assert drawn["chart-channels"]["series"] >= 1
    assert drawn["chart-districts"]["series"] == 1
    assert all(c["painted"] > 0 for c in drawn.values()), drawn
    districts = driver.find_element(By.ID, "district-table").text
    assert "Tamalate" in districts
    check_page(driver, "city")  # docs/dasbor-city.png is a copy of this one

    driver.get(f"{service.url}/dasbor/registri?district=Tamalate")
    row = wait_for(driver, "#count-table tbody tr[data-district='Tamalate']")
    cells = row.find_elements(By.TAG_NAME, "td")
    assert int(cells[1].text) >= 1, row.text  # sellers in Tamalate
    halal = row.find_element(By.CSS_SELECTOR, "td[data-lacking='halal']").text
    assert int(halal) == int(cells[1].text), "no seller here has a halal certificate yet"
    check_page(driver, "registry")

    driver.get(f"{service.url}/dasbor/registri/{seller}/kurasi")
    wait_for(driver, "#curation-form")
    driver.find_element(By.ID, "halal_number").send_keys("ID-HALAL-001")
    driver.find_element(By.CSS_SELECTOR, "#status option[value=verified]").click()
    driver.find_element(By.CSS_SELECTOR, "#curation-form button[type=submit]").click()
    wait_for(driver, "#form-ok")
    check_page(driver, "curation")
    await caught_up(http)
    driver.get(f"{service.url}/dasbor/registri?district=Tamalate")
    row = wait_for(driver, "#count-table tbody tr[data-district='Tamalate']")
    cells = row.find_elements(By.TAG_NAME, "td")
    halal_after = int(row.find_element(By.CSS_SELECTOR, "td[data-lacking='halal']").text)
    sellers = int(cells[1].text)
    assert halal_after == sellers - 1, row.text

    driver.get(f"{service.url}/dasbor/registri?district=Tamalate&lacking=halal")
    answer = wait_for(driver, "#answer").text
    assert answer.startswith(f"{halal_after} / {sellers}"), answer

    for name in ("suspense", "ledger"):
        driver.get(f"{service.url}/dasbor/{name}")
        wait_for(driver, "main h1")
        check_page(driver, name)
    # the last `omniledger verify` shows on the ledger's page
    run = await run_cli(service.deployment, "verify")
    assert run.rc == 0, run
    driver.refresh()
    assert "baik" in wait_for(driver, "#verify strong.good").text
