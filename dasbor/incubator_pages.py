"""The incubator's pages: the seller registry with certification counts, the
curation form (admin), the suspense queue with resolve (admin), and the state
of the ledger.

Writes go through the code the API uses: ``parse_curation`` and
``Ledger.curate_seller`` as ``POST /v1/sellers/{id}/curation`` does, and
``gateways.suspense.resolve`` as ``POST /v1/suspense/{id}/resolve`` does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlencode
from uuid import UUID

from aiohttp import web

import projections.dasbor_reads as dasbor_reads
from dasbor.pages import POOL, page, render
from gateways import suspense
from ledger.api.http import LEDGER, SETTINGS, STORE
from ledger.api.sellers import parse_curation
from ledger.domain.commands import CHANNELS, parse_identifier
from ledger.domain.errors import NotFound, ValidationError
from ledger.domain.sellers import CERTIFICATION_KINDS, CURATION_STATUSES, seller_stream_id
from projections import reads

__all__ = ["add_routes"]

REGISTRY_PAGE_ROWS: Final = 50
#: pages of the registry a user may walk (50 rows each): a limit on the offset
REGISTRY_PAGES_MAX: Final = 1000
SUSPENSE_ROWS: Final = 50
KINDS: Final = ("nib", "pirt", "halal", "sni", "hki")
STATUSES: Final = ("verified", "pending", "rejected")


def _choice(request: web.Request, name: str, allowed: tuple[str, ...] | list[str]) -> str | None:
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        raise ValidationError(f"{name} must be one of {', '.join(allowed)}", field=name)
    return value


@page("admin", "auditor")
async def registry(request: web.Request) -> web.Response:
    districts = list(request.config_dict[SETTINGS].districts)
    district = request.query.get("district") or None
    if district is not None and districts and district not in districts:
        raise ValidationError("unknown district", field="district")
    status = _choice(request, "status", STATUSES)
    lacking = _choice(request, "lacking", KINDS)
    try:
        number = int(request.query.get("page", "1"))
    except ValueError:
        number = 0
    if not 1 <= number <= REGISTRY_PAGES_MAX:
        raise ValidationError(f"page must be 1 to {REGISTRY_PAGES_MAX}", field="page")
    pool = request.app[POOL]
    sellers = await dasbor_reads.seller_registry(
        pool,
        district=district,
        status=status,
        lacking=lacking,
        limit=REGISTRY_PAGE_ROWS + 1,
        offset=(number - 1) * REGISTRY_PAGE_ROWS,
    )
    counts = await dasbor_reads.certification_counts(pool, district=district)
    filters = {
        k: v for k, v in (("district", district), ("status", status), ("lacking", lacking)) if v
    }
    return render(
        request,
        "registry.html",
        {
            "sellers": sellers[:REGISTRY_PAGE_ROWS],
            "counts": counts,
            "districts": districts,
            "kinds": KINDS,
            "statuses": STATUSES,
            "filters": filters,
            "page": number,
            "previous": urlencode({**filters, "page": number - 1}) if number > 1 else None,
            "next": urlencode({**filters, "page": number + 1})
            if len(sellers) > REGISTRY_PAGE_ROWS
            else None,
            "tab": "registri",
        },
    )


async def _seller(request: web.Request, seller_id: str) -> Any:
    found, _ = await request.config_dict[LEDGER].read_stream(seller_stream_id(seller_id))
    if found is None:
        raise NotFound(f"seller {seller_id} is not registered")
    return found


@page("admin", "auditor")
async def curation_form(request: web.Request, error: str | None = None) -> web.Response:
    seller_id = parse_identifier(request.match_info["seller_id"], "seller_id")
    seller = await _seller(request, seller_id)
    held = {c["kind"]: c for c in seller.certifications}
    return render(
        request,
        "curation.html",
        {
            "seller_id": seller_id,
            "seller": seller,
            "held": held,
            "kinds": KINDS,
            "statuses": STATUSES,
            "error": error,
            "done": request.query.get("ok"),
            "tab": "registri",
        },
        422 if error else 200,
    )


@page("admin")
async def curate(request: web.Request) -> web.StreamResponse:
    seller_id = parse_identifier(request.match_info["seller_id"], "seller_id")
    await _seller(request, seller_id)
    form = await request.post()
    certifications = []
    for kind in sorted(CERTIFICATION_KINDS):
        number = form.get(f"{kind}_number")
        if isinstance(number, str) and number.strip():
            cert: dict[str, Any] = {"kind": kind, "number": number.strip()}
            valid = form.get(f"{kind}_valid_until")
            if isinstance(valid, str) and valid.strip():
                cert["valid_until"] = valid.strip()
            certifications.append(cert)
    status = form.get("status")
    try:
        status, certs = parse_curation(
            {
                "status": status if status in CURATION_STATUSES else None,
                "certifications": certifications,
            }
        )
    except ValidationError as e:
        return await curation_form(request, e.message)
    await request.config_dict[LEDGER].curate_seller(
        seller_id=seller_id,
        status=status,
        certifications=certs,
        occurred_at=datetime.now(UTC).isoformat(),
    )
    raise web.HTTPSeeOther(f"/dasbor/registri/{quote(seller_id)}/kurasi?ok=1")


@page("admin", "auditor")
async def suspense_queue(request: web.Request, error: str | None = None) -> web.Response:
    found = await suspense.open_entries(request.config_dict[STORE], SUSPENSE_ROWS, 0)
    return render(
        request,
        "suspense.html",
        {
            "entries": found["suspense"],
            "more": found["next_after"] is not None,
            "channels": sorted(CHANNELS),
            "error": error,
            "done": request.query.get("ok"),
            "tab": "suspense",
        },
        422 if error else 200,
    )


@page("admin")
async def resolve(request: web.Request) -> web.StreamResponse:
    try:
        entry_id = UUID(request.match_info["entry_id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    form = await request.post()
    body = {"channel": form.get("channel"), "order_id": form.get("order_id")}
    try:
        await suspense.resolve(
            request.config_dict[LEDGER], request.config_dict[STORE], entry_id, body
        )
    except ValidationError as e:
        return await suspense_queue(request, e.message)
    raise web.HTTPSeeOther("/dasbor/suspense?ok=1")


@page("admin", "auditor")
async def ledger_state(request: web.Request) -> web.Response:
    store = request.config_dict[STORE]
    head, _ = await store.head()
    relayed = await store.relay_checkpoint(request.config_dict[SETTINGS].stream_name)
    models = await reads.projection_status(request.app[POOL], head, await store.head_recorded_at())
    return render(
        request,
        "ledger_state.html",
        {
            "head": head,
            "relayed": relayed,
            "relay_lag": max(head - relayed, 0),
            "models": models,
            "verify": await dasbor_reads.last_verify(request.app[POOL]),
            "tab": "ledger",
        },
    )


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/registri", registry)
    r.add_get("/registri/{seller_id}/kurasi", curation_form)
    r.add_post("/registri/{seller_id}/kurasi", curate)
    r.add_get("/suspense", suspense_queue)
    r.add_post("/suspense/{entry_id}/selesaikan", resolve)
    r.add_get("/ledger", ledger_state)
