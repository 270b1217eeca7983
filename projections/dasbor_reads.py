"""The queries behind the dasbor's pages (issue 14). Read-only, like ``reads.py``.

``pool`` is the read models' database. Amounts leave as strings with the
currency's digits (``money.format_minor``), times as RFC 3339, days as
``YYYY-MM-DD``; a district is ``None`` for a seller registered without one.
Bad arguments raise ``ValidationError`` naming the argument (``ValueError``
for a range that is too long), before any query. Every query is one bounded
index scan or a scan of the registry (one row per seller); BENCHMARKS.md,
issue 14, has their times at 2,000 sellers and 1,000,000 events.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Final

import asyncpg
import orjson

from ledger.domain.errors import ValidationError
from ledger.domain.money import format_minor
from ledger.domain.orders import order_status
from ledger.domain.sellers import CURATION_STATUSES
from projections.reads import city_days
from projections.recaps import NO_DISTRICT
from projections.registry import KINDS

__all__ = [
    "CITY_RANGE_DAYS_MAX",
    "ROWS_MAX",
    "certification_counts",
    "city_recap_range",
    "last_verify",
    "seller_orders",
    "seller_payouts",
    "seller_registry",
]

#: The longest range ``city_recap_range`` answers (a year, leap day included).
CITY_RANGE_DAYS_MAX: Final = 366
#: The most rows one call returns (``limit``'s upper bound).
ROWS_MAX: Final = 1000
_STATUSES: Final = ("verified", "pending", "rejected")
assert set(_STATUSES) == CURATION_STATUSES
_HAS: Final = ", ".join(f"has_{k}" for k in KINDS)


async def seller_registry(
    pool: asyncpg.Pool,
    *,
    district: str | None = None,
    status: str | None = None,
    lacking: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """The registry's sellers by district (none last), name, id: ``{seller_id, name, district,
    status, certifications: {nib: bool, ...}}``; ``lacking="halal"`` keeps those
    without a halal certificate."""
    _bounded(limit, offset)
    if status is not None and status not in CURATION_STATUSES:
        raise ValidationError(f"status must be one of {', '.join(_STATUSES)}", field="status")
    if lacking is not None and lacking not in KINDS:
        raise ValidationError(f"lacking must be one of {', '.join(KINDS)}", field="lacking")
    # the column name comes from KINDS, never from the caller's text
    lacks = f"NOT has_{lacking}" if lacking is not None else "true"
    rows = await pool.fetch(
        f"""SELECT seller_id, name, district, status, {_HAS} FROM proj_registry
            WHERE ($1::text IS NULL OR district = $1) AND ($2::text IS NULL OR status = $2)
              AND {lacks}
            ORDER BY district = '{NO_DISTRICT}', district, name, seller_id
            LIMIT $3 OFFSET $4""",
        district,
        status,
        limit,
        offset,
    )
    return [
        {
            "seller_id": r["seller_id"],
            "name": r["name"],
            "district": _district(r["district"]),
            "status": r["status"],
            "certifications": {k: r[f"has_{k}"] for k in KINDS},
        }
        for r in rows
    ]


async def certification_counts(
    pool: asyncpg.Pool, *, district: str | None = None
) -> list[dict[str, Any]]:
    """Per district (by name; sellers without one last): ``{district, sellers,
    statuses: {verified, pending, rejected}, lacking: {nib, ...}}``, counts of sellers."""
    statuses = ", ".join(f"count(*) FILTER (WHERE status = '{s}') AS st_{s}" for s in _STATUSES)
    lacking = ", ".join(f"count(*) FILTER (WHERE NOT has_{k}) AS no_{k}" for k in KINDS)
    rows = await pool.fetch(
        f"""SELECT district, count(*) AS sellers, {statuses}, {lacking} FROM proj_registry
            WHERE $1::text IS NULL OR district = $1
            GROUP BY district ORDER BY district = '{NO_DISTRICT}', district""",
        district,
    )
    return [
        {
            "district": _district(r["district"]),
            "sellers": r["sellers"],
            "statuses": {s: r[f"st_{s}"] for s in _STATUSES},
            "lacking": {k: r[f"no_{k}"] for k in KINDS},
        }
        for r in rows
    ]


async def city_recap_range(pool: asyncpg.Pool, start: date, end: date) -> dict[str, Any]:
    """``{"from", "to", "days": [...]}``, a day as ``GET /v1/recaps/daily`` answers it,
    for every local day of ``[start, end]`` (at most ``CITY_RANGE_DAYS_MAX``)."""
    if end < start:
        raise ValueError(f"the range ends ({end}) before it starts ({start})")
    if (end - start).days >= CITY_RANGE_DAYS_MAX:
        raise ValueError(f"at most {CITY_RANGE_DAYS_MAX} days per range")
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "days": await city_days(pool, start, end),
    }


async def seller_orders(
    pool: asyncpg.Pool, seller_id: str, *, limit: int = 50
) -> list[dict[str, Any]]:
    """The seller's newest orders first (by when they were placed):
    ``{channel, order_id, status, amount, currency, placed_at}``."""
    _bounded(limit, 0)
    # newest first: proj_orders_by_seller (seller_id, placed_at, ...) read backwards
    rows = await pool.fetch(
        """SELECT channel, order_id, currency, amount_minor, captured_minor, refunded_minor,
                  cancelled, placed_at
           FROM proj_orders WHERE seller_id = $1
           ORDER BY placed_at DESC, channel DESC, order_id DESC LIMIT $2""",
        seller_id,
        limit,
    )
    return [
        {
            "channel": r["channel"],
            "order_id": r["order_id"],
            "status": order_status(
                r["amount_minor"],
                r["captured_minor"],
                r["refunded_minor"],
                cancelled=r["cancelled"],
            ),
            "amount": format_minor(r["amount_minor"], r["currency"]),
            "currency": r["currency"],
            "placed_at": r["placed_at"].isoformat(),
        }
        for r in rows
    ]


async def seller_payouts(
    pool: asyncpg.Pool, seller_id: str, *, limit: int = 50
) -> list[dict[str, Any]]:
    """The seller's payouts, newest first: ``{payout_ref, amount, currency, recorded_at}``."""
    _bounded(limit, 0)
    rows = await pool.fetch(
        """SELECT reference, currency, amount_minor, recorded_at FROM proj_payouts
           WHERE seller_id = $1 ORDER BY position DESC LIMIT $2""",
        seller_id,
        limit,
    )
    return [
        {
            "payout_ref": r["reference"],
            "amount": format_minor(r["amount_minor"], r["currency"]),
            "currency": r["currency"],
            "recorded_at": r["recorded_at"].isoformat(),
        }
        for r in rows
    ]


async def last_verify(pool: asyncpg.Pool) -> dict[str, Any] | None:
    """The last ``omniledger verify`` of the live log: ``{at, ok, events, head_position,
    problems}``, or ``None`` if none was recorded."""
    try:
        row = await pool.fetchrow(
            "SELECT at, ok, events, head_position, problems::text AS problems"
            " FROM verify_runs ORDER BY id DESC LIMIT 1"
        )
    except asyncpg.UndefinedTableError:  # a database the ledger never migrated
        return None
    if row is None:
        return None
    return {
        "at": row["at"].isoformat(),
        "ok": row["ok"],
        "events": row["events"],
        "head_position": row["head_position"],
        "problems": orjson.loads(row["problems"]),
    }


def _bounded(limit: int, offset: int) -> None:
    if not 1 <= limit <= ROWS_MAX:
        raise ValidationError(f"limit must be 1 to {ROWS_MAX}", field="limit")
    if offset < 0:
        raise ValidationError("offset must be 0 or more", field="offset")


def _district(stored: str) -> str | None:
    return None if stored == NO_DISTRICT else stored
