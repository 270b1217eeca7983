"""A seller's pages: balance and 30-day recap, orders (and the form to record
them), payouts, the recap as CSV.

Reads come from the read models (``projections.reads`` and
``projections.dasbor_reads``); a recorded order goes through the same code as
``POST /v1/events`` (``parse_command``, the key's ``authorize``, the ledger),
so every rule, idempotency and the seller's own scope apply as they do there.
A seller opens only its own pages (``may_see_seller``, checked here on every
request, whatever the URL says).
"""

from __future__ import annotations

import csv
import io
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote

from aiohttp import web

import projections.dasbor_reads as dasbor_reads
from dasbor.i18n import days_back, local_today, parse_rupiah, translate
from dasbor.pages import LANG, POOL, page, render, user_of
from ledger.api.http import LEDGER, SETTINGS, STORE
from ledger.api.responses import status_for
from ledger.domain.commands import parse_command, parse_identifier
from ledger.domain.errors import Forbidden, LedgerError, NotFound, ValidationError
from ledger.domain.sellers import seller_stream_id
from projections import reads

__all__ = ["RECAP_DAYS", "add_routes"]

RECAP_DAYS: Final = 30
#: channels a seller records by hand: no gateway reports them
HAND_CHANNELS: Final = ("whatsapp", "instagram", "pos", "other")
LIST_ROWS_MAX: Final = 50
#: the four series of each channel's chart, with the recap field each is drawn from
SERIES: Final = (
    ("Bruto", "captured"),
    ("Biaya", "fees"),
    ("Bersih", "net"),
    ("Pengembalian", "refunded"),
)


def _seller(request: web.Request) -> str:
    seller_id = parse_identifier(request.match_info["seller_id"], "seller_id")
    if not user_of(request).principal.may_see_seller(seller_id):
        raise Forbidden(translate(request[LANG], "Anda tidak boleh membuka halaman ini."))
    return seller_id


async def _balance(request: web.Request, seller_id: str) -> dict[str, Any]:
    pool, store = request.app[POOL], request.config_dict[STORE]
    balance = await reads.seller_balance(pool, seller_id)
    head, _ = await store.head()
    if balance is None:
        if not await store.stream_exists(seller_stream_id(seller_id)):
            raise NotFound(f"seller {seller_id} is not registered")
        at = await reads.model_position(pool, "balances")
        balance = {"seller_id": seller_id, "currency": "IDR", "as_of_position": at}
    status = await reads.projection_status(pool, head, await store.head_recorded_at())
    model = next((p for p in status if p["name"] == "balances"), None)
    balance["lag_events"] = max(head - balance["as_of_position"], 0)
    balance["lag_seconds"] = model["lag_seconds"] if model else None
    return balance


def _recap_chart(rows: list[dict[str, Any]], days: list[date], lang: str) -> list[dict[str, Any]]:
    """One chart per channel: the four series over ``days`` (amounts as numbers)."""
    index = {d.isoformat(): i for i, d in enumerate(days)}
    charts: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["currency"] != "IDR" or row["date"] not in index:
            continue
        chart = charts.setdefault(
            row["channel"],
            {
                "channel": row["channel"],
                "labels": [d.strftime("%d/%m") for d in days],
                "series": [
                    {"label": translate(lang, name), "field": field, "data": [0.0] * len(days)}
                    for name, field in SERIES
                ],
            },
        )
        for series in chart["series"]:
            series["data"][index[row["date"]]] += float(row[series["field"]])
    return [charts[c] for c in sorted(charts)]


@page("seller", "admin", "auditor")
async def overview(request: web.Request) -> web.Response:
    seller_id = _seller(request)
    balance = await _balance(request, seller_id)
    today = local_today(request.config_dict[SETTINGS].zone)
    days = days_back(today, RECAP_DAYS)
    rows = await reads.seller_recaps(request.app[POOL], seller_id, days[0], days[-1])
    return render(
        request,
        "seller.html",
        {
            "seller_id": seller_id,
            "balance": balance,
            "charts": _recap_chart(rows, days, request[LANG]),
            "rows": sorted(rows, key=lambda r: (r["date"], r["channel"]), reverse=True),
            "first": days[0].isoformat(),
            "last": days[-1].isoformat(),
            "tab": "saldo",
        },
    )


@page("seller", "admin", "auditor")
async def orders(request: web.Request) -> web.Response:
    return await _orders_page(request, _seller(request))


async def _orders_page(
    request: web.Request, seller_id: str, error: str | None = None, status: int = 200
) -> web.Response:
    balance = await _balance(request, seller_id)  # also: 404 for an unknown seller
    listed = await dasbor_reads.seller_orders(request.app[POOL], seller_id, limit=LIST_ROWS_MAX)
    return render(
        request,
        "seller_orders.html",
        {
            "seller_id": seller_id,
            "balance": balance,
            "orders": listed,
            "channels": HAND_CHANNELS,
            "idem": secrets.token_urlsafe(16),
            # when the form was shown: the facts' occurred_at, the same however
            # often the form is sent (a new time would make the key a conflict)
            "at": _now(),
            "error": error,
            "done": request.query.get("ok"),
            "may_write": user_of(request).principal.role in ("seller", "admin"),
            "tab": "pesanan",
        },
        status,
    )


async def _record(request: web.Request, event: dict[str, Any]) -> str:
    """Records one canonical event as ``POST /v1/events`` does: ``recorded`` or ``duplicate``."""
    caller = user_of(request).principal
    result = await request.config_dict[LEDGER].record(caller.authorize(parse_command(event)))
    return result.status


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _text(form: Any, name: str, chars_max: int = 200) -> str:
    value = form.get(name)
    if not isinstance(value, str) or len(value) > chars_max:
        raise ValidationError(f"{name} is missing or too long", field=name)
    return value.strip()


@page("seller", "admin")
async def record_order(request: web.Request) -> web.StreamResponse:
    seller_id = _seller(request)
    form = await request.post()
    try:
        channel = _text(form, "channel", 20)
        if channel not in HAND_CHANNELS:
            raise ValidationError(
                f"channel must be one of {', '.join(HAND_CHANNELS)}", field="channel"
            )
        idem = _text(form, "idem", 64)
        order_id = _text(form, "order_id", 64) or _order_number(request, channel, idem)
        amount = parse_rupiah(_text(form, "amount", 40))
        fact = {
            "seller_id": seller_id,
            "order_id": order_id,
            "channel": channel,
            "amount": amount,
            "occurred_at": _text(form, "at", 40),
        }
        outcome = await _record(request, {"type": "order.placed", "idempotency_key": idem, **fact})
        if form.get("paid_cash") == "1":
            await _record(request, _cash_payment(fact, idem))
    except LedgerError as e:  # a rule of the ledger: said on the form's page
        return await _orders_page(request, seller_id, e.message, status_for(e))
    raise web.HTTPSeeOther(f"/dasbor/penjual/{quote(seller_id)}/pesanan?ok={outcome}")


def _order_number(request: web.Request, channel: str, idem: str) -> str:
    """``WH-20261130-3f9a1c0b``: short, readable, and the same for a form sent twice."""
    today = local_today(request.config_dict[SETTINGS].zone)
    tag = "".join(c for c in idem if c.isalnum())[:8].lower()
    return f"{channel[:2].upper()}-{today:%Y%m%d}-{tag}"


def _cash_payment(fact: dict[str, Any], idem: str) -> dict[str, Any]:
    return {
        "type": "payment.captured",
        "idempotency_key": f"{idem}:cash",
        "order_id": fact["order_id"],
        "channel": fact["channel"],
        "amount": fact["amount"],
        "gateway": "cash",
        "gateway_ref": f"cash-{idem}",
        "occurred_at": fact["occurred_at"],
    }


@page("seller", "admin")
async def order_action(request: web.Request) -> web.StreamResponse:
    """Mark an open order paid in cash (its whole amount), or cancel it."""
    seller_id = _seller(request)
    action = request.match_info["action"]
    form = await request.post()
    try:
        channel = _text(form, "channel", 20)
        order_id = parse_identifier(_text(form, "order_id", 64), "order_id")
        idem = _text(form, "idem", 64)
        if action == "bayar":
            fact = {
                "order_id": order_id,
                "channel": channel,
                "amount": parse_rupiah(_text(form, "amount", 40)),
                "occurred_at": _text(form, "at", 40),
            }
            outcome = await _record(request, _cash_payment(fact, idem))
        elif action == "batal":
            event = {
                "type": "order.cancelled",
                "idempotency_key": f"{idem}:cancel",
                "order_id": order_id,
                "channel": channel,
                "occurred_at": _text(form, "at", 40),
            }
            outcome = await _record(request, event)
        else:
            raise web.HTTPNotFound()
    except LedgerError as e:  # a rule of the ledger: said on the form's page
        return await _orders_page(request, seller_id, e.message, status_for(e))
    raise web.HTTPSeeOther(f"/dasbor/penjual/{quote(seller_id)}/pesanan?ok={outcome}")


@page("seller", "admin", "auditor")
async def payouts(request: web.Request) -> web.Response:
    seller_id = _seller(request)
    balance = await _balance(request, seller_id)
    listed = await dasbor_reads.seller_payouts(request.app[POOL], seller_id, limit=LIST_ROWS_MAX)
    return render(
        request,
        "seller_payouts.html",
        {"seller_id": seller_id, "balance": balance, "payouts": listed, "tab": "pencairan"},
    )


_CSV_FIELDS: Final = (
    "date",
    "channel",
    "currency",
    "orders",
    "order_value",
    "payments",
    "captured",
    "refunds",
    "refunded",
    "fees",
    "net",
)


@page("seller", "admin", "auditor")
async def recap_csv(request: web.Request) -> web.Response:
    seller_id = _seller(request)
    today = local_today(request.config_dict[SETTINGS].zone)
    first = request.query.get("from") or (today - timedelta(days=RECAP_DAYS - 1)).isoformat()
    last = request.query.get("to") or today.isoformat()
    rows = await reads.seller_recaps(request.app[POOL], seller_id, first, last)
    out = io.StringIO()
    writer = csv.DictWriter(out, _CSV_FIELDS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="rekap-{seller_id}-{first}-{last}.csv"'
        },
    )


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/penjual/{seller_id}", overview)
    r.add_get("/penjual/{seller_id}/pesanan", orders)
    r.add_post("/penjual/{seller_id}/pesanan", record_order)
    r.add_post("/penjual/{seller_id}/pesanan/{action}", order_action)
    r.add_get("/penjual/{seller_id}/pencairan", payouts)
    r.add_get("/penjual/{seller_id}/rekap.csv", recap_csv)
