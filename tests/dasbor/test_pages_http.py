"""Sign-in, sessions, CSRF and roles of the pages, over plain HTTP (issue 14, point 2).

Every refusal is checked on the server's answer and on the ledger: a refused
form records nothing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ledger.store import LedgerStore
from tests.api.conftest import Api
from tests.dasbor.conftest import csrf_of


async def _seller_key(api: Api, seller_id: str) -> str:
    await api.seller(seller_id, district="Tamalate")
    status, out = await api.post("/v1/keys", {"role": "seller", "seller_id": seller_id})
    assert status == 201, out
    return str(out["key"])


async def test_sign_in_sets_a_strict_http_only_expiring_cookie(
    api: Api, browsers: Any, uid
) -> None:
    seller = uid("s")
    key = await _seller_key(api, seller)
    b = browsers()
    status, headers, _ = await b.sign_in(key)
    assert status == 303 and headers["Location"] == f"/dasbor/penjual/{seller}"
    cookie = next(c for c in headers.getall("Set-Cookie") if c.startswith("dasbor_session="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=" in cookie
    assert "Path=/dasbor/" in cookie
    assert "Secure" not in cookie, "plain HTTP here: Secure only when served over TLS"
    status, headers, html = await b.get(f"/dasbor/penjual/{seller}")
    assert status == 200, html
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert 'id="balance"' in html


async def test_an_unknown_key_and_a_machine_key_are_refused(api: Api, browsers: Any) -> None:
    status, _, html = await browsers().sign_in("olk_not-a-key")
    assert status == 401 and 'id="sign-in-error"' in html
    status, out = await api.post("/v1/keys", {"role": "payouts"})
    assert status == 201
    status, _, html = await browsers().sign_in(out["key"])
    assert status == 403 and 'id="sign-in-error"' in html


async def test_a_seller_cannot_open_another_sellers_pages(api: Api, browsers: Any, uid) -> None:
    mine, theirs = uid("mine"), uid("theirs")
    key = await _seller_key(api, mine)
    await api.seller(theirs)
    b = browsers()
    await b.sign_in(key)
    for path in ("", "/pesanan", "/pencairan", "/rekap.csv"):
        status, _, body = await b.get(f"/dasbor/penjual/{theirs}{path}")
        assert status == 403, (path, body[:300])
        assert "b-available" not in body and "date,channel" not in body
    for path in ("/dasbor/kota", "/dasbor/registri", "/dasbor/suspense", "/dasbor/ledger"):
        status, _, _ = await b.get(path)
        assert status == 403, path


async def test_a_form_without_its_csrf_token_is_refused_and_records_nothing(
    api: Api, browsers: Any, store: LedgerStore, uid
) -> None:
    seller = uid("s")
    key = await _seller_key(api, seller)
    b = browsers()
    await b.sign_in(key)
    status, _, html = await b.get(f"/dasbor/penjual/{seller}/pesanan")
    assert status == 200, html
    form = {"channel": "whatsapp", "idem": uid("idem"), "amount": "150.000", "order_id": ""}
    head_before, _ = await store.head()
    for csrf in (None, "forged-token"):
        sent = form if csrf is None else {**form, "csrf": csrf}
        status, _, body = await b.post(f"/dasbor/penjual/{seller}/pesanan", sent)
        assert status == 403, body[:300]
    assert (await store.head())[0] == head_before, "a refused form recorded something"
    # another user's token is not this user's either
    other = browsers()
    await other.sign_in(await _seller_key(api, uid("other")))
    _, _, theirs = await other.get(f"/dasbor/penjual/{uid('other')}")
    sent = {**form, "csrf": csrf_of(theirs)}
    head_before, _ = await store.head()
    status, _, _ = await b.post(f"/dasbor/penjual/{seller}/pesanan", sent)
    assert status == 403
    assert (await store.head())[0] == head_before
    # the sign-in form too: no token, no session
    status, _, _ = await browsers().post("/dasbor/masuk", {"key": key})
    assert status == 403


async def test_sign_out_ends_the_session_on_the_server(api: Api, browsers: Any, uid) -> None:
    seller = uid("s")
    b = browsers()
    await b.sign_in(await _seller_key(api, seller))
    _, _, html = await b.get(f"/dasbor/penjual/{seller}")
    token = next(c.value for c in b.session.cookie_jar if c.key == "dasbor_session")
    status, headers, _ = await b.post("/dasbor/keluar", {"csrf": csrf_of(html)})
    assert status == 303 and headers["Location"] == "/dasbor/masuk"
    # the old cookie, replayed by someone who copied it, opens nothing
    thief = browsers()
    thief.session.cookie_jar.update_cookies({"dasbor_session": token})
    status, headers, _ = await thief.get(f"/dasbor/penjual/{seller}")
    assert status == 303 and headers["Location"].startswith("/dasbor/masuk")


async def test_anonymous_pages_send_to_sign_in(browsers: Any) -> None:
    status, headers, _ = await browsers().get("/dasbor")
    assert status == 301 and headers["Location"] == "/dasbor/"
    status, headers, _ = await browsers().get("/dasbor/")
    assert status == 303 and headers["Location"] == "/dasbor/masuk"
    status, headers, _ = await browsers().get("/dasbor/kota")
    assert status == 303 and headers["Location"] == "/dasbor/masuk?next=/dasbor/kota"


async def test_bahasa_by_default_english_when_asked(api: Api, browsers: Any, uid) -> None:
    seller = uid("s")
    key = await _seller_key(api, seller)
    b = browsers()
    await b.sign_in(key)
    _, _, html = await b.get(f"/dasbor/penjual/{seller}")
    assert "Tersedia" in html and 'lang="id"' in html
    _, _, html = await b.get(
        f"/dasbor/penjual/{seller}", headers={"Accept-Language": "en-US,en;q=0.9,id;q=0.5"}
    )
    assert "Available" in html and 'lang="en"' in html
    status, headers, _ = await b.get(f"/dasbor/bahasa/en?next=/dasbor/penjual/{seller}")
    assert status == 303 and headers["Location"] == f"/dasbor/penjual/{seller}"
    _, _, html = await b.get(f"/dasbor/penjual/{seller}", headers={"Accept-Language": "id"})
    assert "Available" in html, "the user's switch wins over the browser's language"
    status, headers, _ = await b.get("/dasbor/bahasa/id?next=https://evil.example/")
    assert headers["Location"] == "/dasbor/"


async def test_the_order_form_records_once_however_often_it_is_sent(
    api: Api, browsers: Any, store: LedgerStore, uid
) -> None:
    seller = uid("s")
    b = browsers()
    await b.sign_in(await _seller_key(api, seller))
    _, _, html = await b.get(f"/dasbor/penjual/{seller}/pesanan")
    at = html.split('name="at" value="')[1].split('"')[0]
    form = {"csrf": csrf_of(html), "idem": uid("idem"), "at": at, "channel": "whatsapp",
            "order_id": "", "amount": "Rp 150.000", "paid_cash": "1"}  # fmt: skip
    head_before, _ = await store.head()
    status, headers, body = await b.post(f"/dasbor/penjual/{seller}/pesanan", form)
    assert status == 303, body[:500]
    assert headers["Location"].endswith("/pesanan?ok=recorded")
    assert (await store.head())[0] == head_before + 2, "the order and its cash payment"
    events = await api.events_after(head_before)
    assert [e["type"] for e in events] == ["order.placed", "payment.captured"]
    placed, paid = events[0]["data"], events[1]["data"]
    assert placed["seller_id"] == seller and placed["amount"] == "150000.00"
    assert placed["channel"] == "whatsapp" and placed["order_id"].startswith("WH-")
    assert paid["gateway"] == "cash" and paid["amount"] == "150000.00"
    assert paid["order_id"] == placed["order_id"]
    # the same form again (a double tap, a reload): nothing new
    status, headers, _ = await b.post(f"/dasbor/penjual/{seller}/pesanan", form)
    assert status == 303 and headers["Location"].endswith("?ok=duplicate")
    assert (await store.head())[0] == head_before + 2
    # a bad amount is answered on the page, and records nothing
    status, _, body = await b.post(
        f"/dasbor/penjual/{seller}/pesanan", {**form, "idem": uid("x"), "amount": "banyak"}
    )
    assert status == 422 and 'id="form-error"' in body
    assert (await store.head())[0] == head_before + 2


async def test_an_auditor_reads_but_posts_no_form(
    api: Api, browsers: Any, store: LedgerStore, uid
) -> None:
    seller = uid("s")
    await api.seller(seller)
    status, out = await api.post("/v1/keys", {"role": "auditor"})
    assert status == 201
    b = browsers()
    await b.sign_in(out["key"])
    status, _, html = await b.get(f"/dasbor/penjual/{seller}/pesanan")
    assert status == 200 and 'id="order-form"' not in html
    head_before, _ = await store.head()
    form = {"csrf": csrf_of(html), "idem": uid("i"), "channel": "whatsapp", "amount": "1000"}
    status, _, _ = await b.post(f"/dasbor/penjual/{seller}/pesanan", form)
    assert status == 403
    status, _, _ = await b.post(
        f"/dasbor/registri/{seller}/kurasi", {"csrf": csrf_of(html), "status": "verified"}
    )
    assert status == 403
    assert (await store.head())[0] == head_before


async def test_the_recap_downloads_as_csv(api: Api, browsers: Any, uid) -> None:
    seller = uid("s")
    b = browsers()
    await b.sign_in(await _seller_key(api, seller))
    status, headers, body = await b.get(
        f"/dasbor/penjual/{seller}/rekap.csv?from=2026-11-01&to=2026-11-30"
    )
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert f'filename="rekap-{seller}-2026-11-01-2026-11-30.csv"' in headers["Content-Disposition"]
    assert body.splitlines()[0] == (
        "date,channel,currency,orders,order_value,payments,captured,refunds,refunded,fees,net"
    )
    status, _, body = await b.get(f"/dasbor/penjual/{seller}/rekap.csv?from=2026-11-30&to=x")
    assert status == 422 and 'id="error"' in body


async def test_an_open_order_is_paid_in_cash_or_cancelled_from_its_buttons(
    api: Api, browsers: Any, store: LedgerStore, uid
) -> None:
    seller, other = uid("s"), uid("other")
    b = browsers()
    await b.sign_in(await _seller_key(api, seller))
    await api.seller(other)
    await api.place(other, uid("theirs"), "50000", channel="whatsapp")
    _, _, html = await b.get(f"/dasbor/penjual/{seller}/pesanan")
    at = html.split('name="at" value="')[1].split('"')[0]
    base = {"csrf": csrf_of(html), "at": at}
    for order_id in (uid("o1"), uid("o2")):
        form = {**base, "idem": order_id, "channel": "instagram", "order_id": order_id,
                "amount": "75.000"}  # fmt: skip
        status, _, body = await b.post(f"/dasbor/penjual/{seller}/pesanan", form)
        assert status == 303, body[:300]
    head, _ = await store.head()
    paid = {**base, "idem": uid("p"), "channel": "instagram", "order_id": uid("o1"),
            "amount": "75000,00"}  # fmt: skip
    status, headers, body = await b.post(f"/dasbor/penjual/{seller}/pesanan/bayar", paid)
    assert status == 303 and headers["Location"].endswith("?ok=recorded"), body[:300]
    cancel = {**base, "idem": uid("c"), "channel": "instagram", "order_id": uid("o2")}
    status, headers, _ = await b.post(f"/dasbor/penjual/{seller}/pesanan/batal", cancel)
    assert status == 303 and headers["Location"].endswith("?ok=recorded")
    events = await api.events_after(head)
    assert [(e["type"], e["data"]["order_id"]) for e in events] == [
        ("payment.captured", uid("o1")),
        ("order.cancelled", uid("o2")),
    ]
    assert events[0]["data"]["gateway"] == "cash"
    # another seller's order is not this seller's to pay or cancel, whatever the form says
    head, _ = await store.head()
    theirs = {**base, "idem": uid("t"), "channel": "whatsapp", "order_id": uid("theirs")}
    status, _, body = await b.post(f"/dasbor/penjual/{seller}/pesanan/batal", theirs)
    assert status == 422 and 'id="form-error"' in body and "no order" in body
    status, _, _ = await b.post(
        f"/dasbor/penjual/{seller}/pesanan/bayar", {**theirs, "amount": "50000"}
    )
    assert status == 422
    assert (await store.head())[0] == head


async def test_an_expired_session_opens_nothing(api: Api, browsers: Any, pool, uid) -> None:
    seller = uid("s")
    b = browsers()
    await b.sign_in(await _seller_key(api, seller))
    token = next(c.value for c in b.session.cookie_jar if c.key == "dasbor_session")
    digest = hashlib.sha256(token.encode()).digest()
    row = await pool.fetchrow("SELECT * FROM dasbor_sessions WHERE token_sha256 = $1", digest)
    assert row is not None and row["key_sha256"] != token.encode(), "only hashes are kept"
    await pool.execute(
        "UPDATE dasbor_sessions SET expires_at = now() - interval '1 second'"
        " WHERE token_sha256 = $1",
        digest,
    )
    status, headers, _ = await b.get(f"/dasbor/penjual/{seller}")
    assert status == 303 and headers["Location"].startswith("/dasbor/masuk")
