"""``GET /v1/openapi.json`` is built from the routes the app serves (issue 11, point 5).

"The full app" is the one ``omniledger serve``/``up`` runs: the core routes plus
every extension from ``ledger.ops.bootstrap.extensions`` (gateways and suspense,
audit and reconciliation, projection reads). Nothing here compares the
document with itself: it is compared with the router, with the server's
behaviour at the limits it states, with the roles the server enforces, with
the document of issue 10 (it may only grow), and every answer below is
validated against it (``tests/api/conftest.py``, ``Contract``).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from ledger.api.http import create_app
from ledger.api.openapi import served
from ledger.app.ledger import Ledger
from ledger.ops import bootstrap
from ledger.ops.settings import Settings
from ledger.store import LedgerStore
from tests.api.conftest import Api, Contract, answer, contract_of

FIXTURES = Path(__file__).parent.parent / "fixtures"
#: The document as issue 10 left it (written by hand then): the built one covers it all.
ISSUE_10 = Path(__file__).parent / "openapi_issue10.json"
#: Answers the hand-written document got wrong, corrected in the built one: the 503
#: of /healthz was never an error object but ``{"status": "unavailable", "database"}``.
CORRECTED: frozenset[tuple[str, str]] = frozenset({("GET /healthz", "503")})
XENDIT_TOKEN = "test-xendit-token"
AT = "2026-11-30T10:00:00+08:00"


@pytest.fixture(scope="module")
async def full_client(
    settings: Settings, ledger: Ledger, store: LedgerStore, pool: asyncpg.Pool
) -> AsyncIterator[TestClient]:
    """The app as ``omniledger up`` builds it, with a Xendit token so a callback is read."""
    settings = dataclasses.replace(settings, xendit_callback_token=XENDIT_TOKEN)
    await bootstrap.prepare(settings, pool)  # the projection tables, as `up` makes them
    app = create_app(settings, ledger, store, extensions=bootstrap.extensions(settings, pool))
    async with TestClient(TestServer(app)) as client:
        yield client


def routes(app: web.Application) -> set[tuple[str, str]]:
    return {(method, path) for method, path, _ in served(app)}


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}


async def test_the_served_document_is_valid_openapi_3_1(full_client, admin):
    status, doc = await answer(full_client, "GET", "/v1/openapi.json", headers=admin)
    assert status == 200
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # openapi-spec-validator: raises on an invalid document


async def test_the_document_lists_exactly_the_served_routes(client, full_client, admin):
    for app_client in (client, full_client):
        status, doc = await answer(app_client, "GET", "/v1/openapi.json", headers=admin)
        assert status == 200
        assert documented(doc) == routes(app_client.app)
    # the core's routes and the extensions' (14 + 8 today): none left out
    assert len(routes(full_client.app)) > len(routes(client.app)) >= 10


def test_an_app_with_a_route_without_a_spec_is_not_built(settings, ledger, store):
    async def undocumented(request: web.Request) -> web.Response:
        return web.json_response({})

    class Careless:
        def setup(self, app: web.Application) -> None:
            app.router.add_get("/v1/undocumented", undocumented)

    with pytest.raises(RuntimeError, match="GET /v1/undocumented: no spec"):
        create_app(settings, ledger, store, extensions=[Careless()])


async def test_roles_are_the_ones_the_server_enforces(full_client, admin):
    """For each route behind a key and each role: 403 "may not call this" exactly
    when the document's ``x-roles`` leaves the role out."""
    api = Api(full_client, admin)
    keys = {role: await api.key(role) for role in ("admin", "auditor", "gateway", "payouts")}
    seller = "s-" + uuid.uuid4().hex[:8]
    await api.seller(seller)
    keys["seller"] = await api.key("seller", seller)
    doc = contract_of(full_client.app).document
    checked = 0
    for method, path, handler in served(full_client.app):
        op = doc["paths"][path][method.lower()]
        if "x-roles" not in op:
            assert op["security"] == [] and getattr(handler, "roles", None) is None
            continue
        url = path.format(channel="qris", order_id="o-1", seller_id=seller,
                          suspense_id=uuid.uuid4())  # fmt: skip
        for role, headers in keys.items():
            # no body: the role is decided before the body is read
            resp = await full_client.request(method, url, headers=headers)
            text = await resp.text()
            refused = resp.status == 403 and "may not call this" in text
            assert refused == (role not in op["x-roles"]), (method, path, role, resp.status, text)
            checked += 1
    assert checked >= 5 * 12


async def test_the_stated_limits_are_the_ones_checked(full_client, admin):
    """Each bounded query parameter: its documented maximum is accepted, one more is 422."""
    doc = contract_of(full_client.app).document
    bounded = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for param in op.get("parameters", ()):
                high = param["schema"].get("maximum")
                if method != "get" or param["in"] != "query" or high is None or "{" in path:
                    continue  # a templated path needs ids: its limits are tested beside it
                status, _ = await answer(full_client, "GET", f"{path}?{param['name']}={high}",
                                         headers=admin)  # fmt: skip
                assert status == 200, (path, param["name"], high)
                over = f"{path}?{param['name']}={high + 1}"
                status, body = await answer(full_client, "GET", over, headers=admin)
                assert (status, body["error"]["field"]) == (422, param["name"]), (path, body)
                bounded += 1
    assert bounded >= 4  # after and limit of /v1/events and /v1/suspense
    batch_max = doc["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["oneOf"][1]["properties"]["events"]["maxItems"]  # fmt: skip
    api = Api(full_client, admin)
    status, body = await api.post("/v1/events", {"events": [{}] * (batch_max + 1)})
    assert (status, body["error"]["field"]) == (422, "events")
    status, body = await api.post("/v1/events", {"events": [{}] * batch_max})
    assert status == 200 and len(body["results"]) == batch_max


async def test_the_stated_enums_are_the_ones_accepted(full_client, admin):
    api = Api(full_client, admin)
    doc = contract_of(full_client.app).document
    event = doc["components"]["schemas"]["Event"]["properties"]
    seller = "s-" + uuid.uuid4().hex[:8]
    await api.seller(seller)
    for channel in event["channel"]["enum"]:
        status, body = await api.event(type="order.placed", seller_id=seller, channel=channel,
                                       order_id=uuid.uuid4().hex, amount="10")  # fmt: skip
        assert status == 201, (channel, body)
    status, body = await api.event(type="order.placed", seller_id=seller, channel="fax",
                                   order_id=uuid.uuid4().hex, amount="10")  # fmt: skip
    assert (status, body["error"]["field"]) == (422, "channel")
    roles = doc["paths"]["/v1/keys"]["post"]["requestBody"]["content"]["application/json"][
        "schema"]["properties"]["role"]["enum"]  # fmt: skip
    for role in roles:
        status, body = await api.post(
            "/v1/keys", {"role": role, **({"seller_id": seller} if role == "seller" else {})}
        )
        assert status == 201, (role, body)
    status, body = await api.post("/v1/keys", {"role": "root"})
    assert (status, body["error"]["field"]) == (422, "role")


def _fields(schema: Any, doc: dict[str, Any], seen: frozenset[str] = frozenset()) -> set[str]:
    """Every property name reachable from ``schema`` (through $ref, anyOf, items, ...)."""
    out: set[str] = set()
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            node: Any = doc
            for part in ref[2:].split("/"):
                node = node[part]
            out |= _fields(node, doc, seen | {ref})
        for name, value in schema.items():
            if name == "properties":
                out |= set(value)
            out |= _fields(value, doc, seen)
    elif isinstance(schema, list):
        for value in schema:
            out |= _fields(value, doc, seen)
    return out


async def test_the_document_covers_all_that_issue_10_documented(full_client, admin):
    old = orjson.loads(ISSUE_10.read_bytes())
    status, new = await answer(full_client, "GET", "/v1/openapi.json", headers=admin)
    assert status == 200
    for path, ops in old["paths"].items():
        for method, op in ops.items():
            now = new["paths"][path][method]
            where = f"{method.upper()} {path}"
            assert set(op["responses"]) <= set(now["responses"]), where
            for code, reply in op["responses"].items():
                if (where, code) in CORRECTED:
                    continue
                assert _fields(reply, old) <= _fields(now["responses"][code], new), (where, code)
            params = {p["name"] for p in op.get("parameters", ())}
            assert params <= {p["name"] for p in now.get("parameters", ())}, where
            body = op.get("requestBody", {})
            assert _fields(body, old) <= _fields(now.get("requestBody", {}), new), where
            assert ("security" in op) == ("security" in now), where


async def test_every_reference_resolves(full_client, admin):
    status, doc = await answer(full_client, "GET", "/v1/openapi.json", headers=admin)
    assert status == 200
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert part in node, f"unresolved {ref}"
            node = node[part]


async def test_every_route_answers_as_documented(full_client, admin):
    """One or more real calls per route of the full app, successes and the main errors,
    each validated against the document; then every route must have been called."""
    contract = Contract(contract_of(full_client.app).document)
    api = Api(full_client, admin)
    tag = uuid.uuid4().hex[:8]
    seller, order = f"s-{tag}", f"o-{tag}"
    no_key: dict[str, str] = {}

    async def call(method: str, path: str, headers: dict[str, str] = admin, **kw: Any) -> Any:
        resp = await full_client.request(method, path, headers=headers, **kw)
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        contract.check(method, path, resp.status, resp.content_type, body)
        return resp.status, body

    await api.seller(seller, district="Wajo", channels={"shopee": "12345"})
    assert (await call("POST", "/v1/sellers", json={"seller_id": seller, "name": "x"}))[0] == 409
    assert (await call("POST", f"/v1/sellers/{seller}/curation",
                       json={"status": "verified", "certifications": [
                           {"kind": "halal", "number": "H-1", "valid_until": "2027-01-01"}]}))[
        0] == 201  # fmt: skip
    placed = {"idempotency_key": f"k-{tag}", "type": "order.placed", "occurred_at": AT,
              "seller_id": seller, "order_id": order, "channel": "qris",
              "amount": "1000"}  # fmt: skip
    assert (await call("POST", "/v1/events", json=placed))[0] == 201
    assert (await call("POST", "/v1/events", json=placed))[0] == 200
    assert (await call("POST", "/v1/events", json=placed | {"amount": "9"}))[0] == 409
    captured = {"idempotency_key": f"c-{tag}", "type": "payment.captured", "occurred_at": AT,
                "order_id": order, "channel": "qris", "amount": "600", "fee": "6",
                "gateway": "xendit", "gateway_ref": f"g-{tag}"}  # fmt: skip
    assert (await call("POST", "/v1/events", json={"events": [captured, {}]}))[0] == 200
    assert (await call("POST", "/v1/events", data=b"{", headers=admin))[0] == 400
    assert (await call("POST", "/v1/events", json=placed, headers=no_key))[0] == 401
    assert (await call("GET", "/v1/events?limit=2"))[0] == 200
    assert (await call("GET", "/v1/events?limit=x"))[0] == 422
    status, body = await call("GET", f"/v1/orders/qris/{order}")
    assert (status, body["status"], body["captured"], body["fees"]) == (
        200, "partially_paid", "600.00", "6.00")  # fmt: skip
    assert (await call("GET", f"/v1/orders/qris/o-missing-{tag}"))[0] == 404
    assert (await call("GET", f"/v1/sellers/{seller}/balance"))[0] == 200
    assert (await call("GET", f"/v1/sellers/{seller}/balance?as_of=2027-01-01T00:00:00Z"))[0] == 200
    assert (await call("GET", f"/v1/sellers/nobody-{tag}/balance"))[0] == 404
    seller_key = await api.key("seller", seller)
    assert (await call("GET", "/v1/sellers/other/balance", headers=seller_key))[0] == 403
    assert (await call("POST", "/v1/keys", json={"role": "gateway", "gateway": "xendit"}))[0] == 201
    assert (await call("GET", "/v1/openapi.json"))[0] == 200
    assert (await call("GET", "/openapi.json", headers=no_key))[0] == 200
    assert (await call("GET", "/healthz", headers=no_key))[0] == 200
    assert (await call("GET", "/metrics", headers=no_key))[0] == 200
    # the extensions' routes
    invoice = (FIXTURES / "gateways" / "xendit_invoice_paid.json").read_bytes()
    xendit = {"x-callback-token": XENDIT_TOKEN, "Content-Type": "application/json"}
    assert (await call("POST", "/v1/gateways/xendit/callbacks", data=invoice, headers=xendit))[
        0] == 200  # fmt: skip
    bad_token = xendit | {"x-callback-token": "wrong"}
    assert (await call("POST", "/v1/gateways/xendit/callbacks", data=invoice,
                       headers=bad_token))[0] == 401  # fmt: skip
    for path in ("/v1/gateways/midtrans/notifications", "/v1/gateways/shopee/push"):
        assert (await call("POST", path, data=b"{}", headers=no_key))[0] == 401  # not configured
    assert (await call("GET", "/v1/suspense?limit=5"))[0] == 200
    resolve = f"/v1/suspense/{uuid.uuid4()}/resolve"
    assert (await call("POST", resolve, json={"channel": "qris", "order_id": order}))[0] == 404
    assert (await call("POST", resolve, json={"channel": "fax", "order_id": order}))[0] == 422
    assert (await call("GET", "/v1/recaps/daily?date=2026-11-30"))[0] == 200
    assert (await call("GET", "/v1/recaps/daily"))[0] == 422
    status, _ = await call("GET", f"/v1/sellers/{seller}/recaps?from=2026-11-30&to=2026-11-30")
    assert status in (200, 404)  # 404 until the recaps projection has read the seller
    assert (await call("GET", "/v1/projections"))[0] == 200
    report = (FIXTURES / "reports" / "xendit_transactions.csv").read_bytes()
    url = "/v1/reconciliations?gateway=xendit&date=2026-11-30"
    csv = admin | {"Content-Type": "text/csv"}
    assert (await call("POST", url, data=report, headers=csv))[0] == 200
    assert (await call("POST", url.replace("xendit", "doku"), data=report, headers=csv))[0] == 422

    called = {(method, path) for method, path, _ in contract.seen}
    assert called == routes(full_client.app), sorted(routes(full_client.app) - called)
    statuses = {status for _, _, status in contract.seen}
    assert {200, 201, 400, 401, 403, 404, 409, 422} <= statuses


async def test_the_document_is_served_without_a_key_too(full_client, admin):
    """The public contract is readable by anyone (issue 13): ``/openapi.json`` needs no
    key and is the very document ``/v1/openapi.json`` serves to a key holder."""
    status, public = await answer(full_client, "GET", "/openapi.json", headers={})
    assert status == 200, public
    status, keyed = await answer(full_client, "GET", "/v1/openapi.json", headers=admin)
    assert status == 200 and public == keyed
    assert (
        "/openapi.json" in public["paths"]
        and public["paths"]["/openapi.json"]["get"].get("security") == []
    )


README = Path(__file__).resolve().parents[2] / "README.md"


async def test_the_readme_lists_every_route_with_its_roles(full_client):
    """The README's API table is the newcomer's map: every route the app serves is a
    row of it, with the roles its spec admits ("anyone" for a public route)."""
    readme = README.read_text()
    doc = (await answer(full_client, "GET", "/openapi.json", headers={}))[1]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            who = "anyone" if op.get("security") == [] else ", ".join(op["x-roles"])
            assert f"| `{method.upper()} {path}` | {who} |" in readme, (method, path, who)
