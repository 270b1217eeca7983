"""The city's pages (admin, auditor): the daily recap over a chosen range, and its CSV.

Active sellers per day, gross by channel per day and by district (kecamatan)
over the range, as charts and tables, from ``dasbor_reads.city_recap_range``
(one snapshot of the city read model).
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Final

from aiohttp import web

import projections.dasbor_reads as dasbor_reads
from dasbor.i18n import local_today, translate
from dasbor.pages import LANG, POOL, page, render
from ledger.api.http import SETTINGS
from ledger.domain.commands import parse_day
from ledger.domain.errors import ValidationError

__all__ = ["CITY_DAYS_DEFAULT", "CITY_DAYS_MAX", "add_routes"]

CITY_DAYS_DEFAULT: Final = 30
#: the longest range one page or file shows (a quarter and a bit)
CITY_DAYS_MAX: Final = 92


def _range(request: web.Request) -> tuple[date, date]:
    today = local_today(request.config_dict[SETTINGS].zone)
    last = parse_day(request.query["to"], "to") if request.query.get("to") else today
    first = (
        parse_day(request.query["from"], "from")
        if request.query.get("from")
        else last - timedelta(days=CITY_DAYS_DEFAULT - 1)
    )
    if last < first:
        raise ValidationError("'to' is before 'from'", field="to")
    if (last - first).days >= CITY_DAYS_MAX:
        raise ValidationError(f"at most {CITY_DAYS_MAX} days at once", field="to")
    return first, last


def _idr(row: dict[str, Any], field: str) -> Decimal:
    return Decimal(row[field]) if row.get("currency", "IDR") == "IDR" else Decimal(0)


def summarise(recap: dict[str, Any], lang: str) -> dict[str, Any]:
    """The charts' series and the tables' rows of one range (gross = captured, in IDR)."""
    days = recap["days"]
    labels = [d["date"][8:10] + "/" + d["date"][5:7] for d in days]
    channels = sorted({c["channel"] for d in days for c in d["channels"]})
    by_channel = {ch: [0.0] * len(days) for ch in channels}
    district_totals: dict[str, dict[str, Decimal]] = {}
    channel_totals: dict[str, dict[str, Decimal]] = {}
    table = []
    for i, day in enumerate(days):
        gross = Decimal(0)
        orders = 0
        for c in day["channels"]:
            by_channel[c["channel"]][i] += float(_idr(c, "captured"))
            gross += _idr(c, "captured")
            orders += c["orders"]
            _add(channel_totals.setdefault(c["channel"], {}), c)
        for d in day["districts"]:
            name = d["district"] or translate(lang, "tanpa kecamatan")
            _add(district_totals.setdefault(name, {}), d)
        table.append(
            {
                "date": day["date"],
                "active_sellers": day["active_sellers"],
                "orders": orders,
                "gross": gross,
            }
        )
    districts = sorted(district_totals, key=lambda n: -district_totals[n]["captured"])
    return {
        "labels": labels,
        "active": {
            "labels": labels,
            "series": [
                {
                    "label": translate(lang, "Penjual aktif"),
                    "data": [d["active_sellers"] for d in days],
                }
            ],
        },
        "by_channel": {
            "labels": labels,
            "series": [{"label": ch, "data": by_channel[ch]} for ch in channels],
        },
        "by_district": {
            "labels": districts,
            "series": [
                {
                    "label": translate(lang, "Bruto"),
                    "data": [float(district_totals[n]["captured"]) for n in districts],
                }
            ],
        },
        "days": list(reversed(table)),
        "districts": [{"name": n, **district_totals[n]} for n in districts],
        "channels": [{"name": c, **channel_totals[c]} for c in sorted(channel_totals)],
    }


def _add(totals: dict[str, Decimal], row: dict[str, Any]) -> None:
    for field in ("captured", "fees", "refunded", "net"):
        totals[field] = totals.get(field, Decimal(0)) + _idr(row, field)
    totals["orders"] = totals.get("orders", Decimal(0)) + row["orders"]


@page("admin", "auditor")
async def city(request: web.Request) -> web.Response:
    first, last = _range(request)
    recap = await dasbor_reads.city_recap_range(request.app[POOL], first, last)
    return render(
        request,
        "city.html",
        {
            "first": first.isoformat(),
            "last": last.isoformat(),
            "days_max": CITY_DAYS_MAX,
            "view": summarise(recap, request[LANG]),
            "tab": "kota",
        },
    )


_CSV_FIELDS: Final = (
    "date",
    "kind",
    "name",
    "currency",
    "active_sellers",
    "orders",
    "order_value",
    "payments",
    "captured",
    "refunds",
    "refunded",
    "fees",
    "net",
)


@page("admin", "auditor")
async def city_csv(request: web.Request) -> web.Response:
    """One row per day and channel, then per day and district (``kind`` says which)."""
    first, last = _range(request)
    recap = await dasbor_reads.city_recap_range(request.app[POOL], first, last)
    out = io.StringIO()
    writer = csv.DictWriter(out, _CSV_FIELDS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for day in recap["days"]:
        writer.writerow(
            {
                "date": day["date"],
                "kind": "day",
                "name": "",
                "active_sellers": day["active_sellers"],
            }
        )
        for c in day["channels"]:
            writer.writerow({**c, "date": day["date"], "kind": "channel", "name": c["channel"]})
        for d in day["districts"]:
            writer.writerow(
                {**d, "date": day["date"], "kind": "district", "name": d["district"] or ""}
            )
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="rekap-kota-{first}-{last}.csv"'},
    )


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/kota", city)
    r.add_get("/kota.csv", city_csv)
