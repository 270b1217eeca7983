"""Queries the HTTP layer answers reads with (CONTRACT section 4). Read-only.

Amounts leave as strings with the currency's digits (``money.format_minor``),
counts as integers, days as ``YYYY-MM-DD``. Each function is one statement,
so it sees one snapshot even while a consumer commits or a rebuild swaps.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Final

import asyncpg

from ledger.domain import balances as money_rule
from ledger.domain.commands import parse_day
from ledger.domain.errors import ValidationError
from ledger.domain.money import format_minor
from projections.catalog import PROJECTION_NAMES
from projections.recaps import NO_DISTRICT

__all__ = [
    "city_days",
    "city_recap",
    "projection_status",
    "seller_balance",
    "seller_recaps",
]

#: The longest range ``seller_recaps`` answers in one call.
RECAP_DAYS_MAX: Final = 366

_SUMS: Final = (
    "orders, order_value_minor, payments, captured_minor, refunds, refunded_minor, fees_minor"
)


async def seller_balance(
    pool: asyncpg.Pool, seller_id: str, currency: str = "IDR"
) -> dict[str, Any] | None:
    """``{seller_id, currency, pending, available, ..., as_of_position}`` or ``None`` if unknown.

    ``as_of_position`` is the balances projection's position: every event up
    to it is reflected (an event that did not touch this seller included).
    """
    row = await pool.fetchrow(
        """SELECT b.*, coalesce(p.position, 0) AS projection_position
           FROM proj_balances b
           LEFT JOIN projection_positions p ON p.name = 'balances'
           WHERE b.seller_id = $1 AND b.currency = $2""",
        seller_id,
        currency,
    )
    if row is None:
        return None
    totals = money_rule.Totals.of(dict(row))
    return money_rule.balance_json(
        row["seller_id"], row["currency"], totals, row["projection_position"]
    )


async def model_position(pool: asyncpg.Pool, name: str) -> int:
    """The last position the read model ``name`` has applied (0 before its first)."""
    position = await pool.fetchval(
        "SELECT position FROM projection_positions WHERE name = $1", name
    )
    return int(position or 0)


async def seller_recaps(
    pool: asyncpg.Pool, seller_id: str, date_from: date | str, date_to: date | str
) -> list[dict[str, Any]]:
    """One row per local day, channel and currency in ``[date_from, date_to]``, in that order."""
    first, last = _day(date_from, "from"), _day(date_to, "to")
    if last < first:
        raise ValidationError("'to' is before 'from'", field="to")
    if (last - first).days >= RECAP_DAYS_MAX:
        raise ValidationError(f"at most {RECAP_DAYS_MAX} days per request", field="to")
    rows = await pool.fetch(
        f"""SELECT day, channel, currency, {_SUMS}
            FROM proj_seller_daily
            WHERE seller_id = $1 AND day BETWEEN $2 AND $3
            ORDER BY day, channel, currency""",
        seller_id,
        first,
        last,
    )
    return [{"date": r["day"].isoformat(), "channel": r["channel"], **_sums(r)} for r in rows]


async def city_recap(pool: asyncpg.Pool, date: date | str) -> dict[str, Any]:
    """``{date, active_sellers, channels: [...], districts: [...]}`` for one local day.

    A district row also counts its active sellers; ``district`` is ``None``
    for sellers registered without one.
    """
    the_day = _day(date, "date")
    return (await city_days(pool, the_day, the_day))[0]


async def city_days(pool: asyncpg.Pool, first: date, last: date) -> list[dict[str, Any]]:
    """``city_recap`` of each day of ``[first, last]``, in order (a day with nothing
    has zero active sellers and no rows): three statements whatever the range."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        # One snapshot for the three statements: a consumer may commit between
        # them. The locks are the ones the SELECTs take anyway, taken up front
        # in the order a rebuild's swap takes them, so that the two cannot
        # deadlock (each would otherwise hold a table the other waits for).
        await conn.execute(
            "LOCK TABLE proj_city_daily, proj_city_district_daily, proj_city_active_counts"
            " IN ACCESS SHARE MODE"
        )
        # a seller is active in one district a day: the day's count is their sum
        active = await conn.fetch(
            """SELECT day, sum(sellers) AS n FROM proj_city_active_counts
               WHERE day BETWEEN $1 AND $2 GROUP BY day""",
            first,
            last,
        )
        channels = await conn.fetch(
            f"""SELECT day, channel, currency, {_SUMS} FROM proj_city_daily
                WHERE day BETWEEN $1 AND $2 ORDER BY day, channel, currency""",
            first,
            last,
        )
        districts = await conn.fetch(
            f"""SELECT d.day, d.district, d.currency, {_SUMS},
                       coalesce(a.sellers, 0) AS active_sellers
                FROM proj_city_district_daily d
                LEFT JOIN proj_city_active_counts a
                       ON a.day = d.day AND a.district = d.district
                WHERE d.day BETWEEN $1 AND $2 ORDER BY d.day, d.district, d.currency""",
            first,
            last,
        )
    days: dict[date, dict[str, Any]] = {
        first + timedelta(days=i): {
            "date": (first + timedelta(days=i)).isoformat(),
            "active_sellers": 0,
            "channels": [],
            "districts": [],
        }
        for i in range((last - first).days + 1)
    }
    for r in active:
        days[r["day"]]["active_sellers"] = int(r["n"])
    for r in channels:
        days[r["day"]]["channels"].append({"channel": r["channel"], **_sums(r)})
    for r in districts:
        days[r["day"]]["districts"].append(
            {
                "district": None if r["district"] == NO_DISTRICT else r["district"],
                "active_sellers": r["active_sellers"],
                **_sums(r),
            }
        )
    return list(days.values())


async def projection_status(
    pool: asyncpg.Pool, log_head_position: int, log_head_recorded_at: datetime | str | None
) -> list[dict[str, Any]]:
    """``[{name, position, lag_events, lag_seconds}]`` for every read model.

    ``lag_events`` is the head position minus the projection's (positions
    have no gaps, ``ledger/store/append.py``). ``lag_seconds`` is how much older the
    last applied event is than the head, by ``recorded_at``: ``0`` when caught
    up, ``None`` when nothing was applied yet or the head's time is unknown.
    """
    if isinstance(log_head_recorded_at, str):
        log_head_recorded_at = datetime.fromisoformat(log_head_recorded_at)
    rows = await pool.fetch(
        "SELECT name, position, last_recorded_at FROM projection_positions ORDER BY name"
    )
    known = {r["name"]: r for r in rows}
    out = []
    for name in sorted(set(PROJECTION_NAMES) | set(known)):
        row = known.get(name)
        position = row["position"] if row else 0
        last = row["last_recorded_at"] if row else None
        lag_events = max(0, log_head_position - position)
        lag_seconds: float | None
        if lag_events == 0:
            lag_seconds = 0.0
        elif last is None or log_head_recorded_at is None:
            lag_seconds = None
        else:
            lag_seconds = max(0.0, (log_head_recorded_at - last).total_seconds())
        out.append(
            {
                "name": name,
                "position": position,
                "lag_events": lag_events,
                "lag_seconds": lag_seconds,
            }
        )
    return out


def _day(value: date | str, field: str) -> date:
    if isinstance(value, datetime):
        raise ValidationError("expected a date, not a timestamp", field=field)
    if isinstance(value, date):
        return value
    return parse_day(value, field)


def _sums(r: asyncpg.Record) -> dict[str, Any]:
    cur = r["currency"]
    # the money sums are numeric (whole minor units, beyond 64 bits if need be)
    captured, refunded, fees = (
        int(r["captured_minor"]),
        int(r["refunded_minor"]),
        int(r["fees_minor"]),
    )
    return {
        "currency": cur,
        "orders": r["orders"],
        "order_value": format_minor(int(r["order_value_minor"]), cur),
        "payments": r["payments"],
        "captured": format_minor(captured, cur),
        "refunds": r["refunds"],
        "refunded": format_minor(refunded, cur),
        "fees": format_minor(fees, cur),
        # the day's money before payouts: ``available``'s rule, on the day's sums
        "net": format_minor(
            money_rule.available_minor(
                money_rule.Totals(captured_minor=captured, refunded_minor=refunded, fees_minor=fees)
            ),
            cur,
        ),
    }
