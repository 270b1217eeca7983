"""Daily recaps ("rekap transaksi"): per seller, and the city's view across sellers.

A recap day is the **local** calendar day of ``occurred_at`` in the
deployment's time zone (default ``Asia/Makassar``): ``2026-11-30T17:30:00Z``
counts for 2026-12-01 (CONTRACT section 1). Rows are per day, channel and
currency:

- ``orders`` / ``order_value``: ``order.placed`` count and amounts;
- ``payments`` / ``captured`` / ``fees``: ``payment.captured`` count, amounts, fees;
- ``refunds`` / ``refunded``: ``refund.issued`` count and amounts;
- ``net``: ``available``'s rule of ``ledger.domain.balances`` on the day's sums
  (captured less refunded less fees; a recap has no payouts), computed on read.

Two read models, each with its own consumer and position:

- ``recaps`` (:class:`SellerRecapsProjection`): ``proj_seller_daily``.
- ``city`` (:class:`CityRecapProjection`): the same sums per channel and per
  district across all sellers, plus who was active. The district comes from
  ``seller.registered`` (kept in ``proj_city_sellers``); a seller is active on
  a day with any order, payment or refund.

The folds are pure; ``apply`` loads what the fold needs and writes deltas.
"""

from __future__ import annotations

import collections
import functools
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, tzinfo
from typing import Any, Final, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.domain import balances as money_rule
from ledger.store.connection import Connection
from projections import envelope
from projections.projection import Projection

__all__ = [
    "DEFAULT_TIMEZONE",
    "CityChanges",
    "CityRecapProjection",
    "RecapDelta",
    "RecapFact",
    "SellerRecapsProjection",
    "SellerRegistered",
    "fold_city",
    "fold_seller_recaps",
    "parse",
    "zone",
]

DEFAULT_TIMEZONE: Final = "Asia/Makassar"
#: Stored for a seller registered without a district (a key column cannot be NULL).
NO_DISTRICT: Final = ""

FactKind = Literal["order", "payment", "refund"]


class RecapFact(NamedTuple):
    """A ``NamedTuple``: immutable (one serves both recap models) and quick to build."""

    position: int
    kind: FactKind
    seller_id: str
    day: date
    channel: str
    currency: str
    amount_minor: int
    fee_minor: int = 0


class SellerRegistered(NamedTuple):
    position: int
    seller_id: str
    district: str


@dataclass(slots=True)
class RecapDelta:
    orders: int = 0
    order_value_minor: int = 0
    payments: int = 0
    captured_minor: int = 0
    refunds: int = 0
    refunded_minor: int = 0
    fees_minor: int = 0

    def add(self, fact: RecapFact) -> None:
        if fact.kind == "order":
            self.orders += 1
            self.order_value_minor += fact.amount_minor
        elif fact.kind == "payment":
            self.payments += 1
            self.captured_minor += fact.amount_minor
            self.fees_minor += fact.fee_minor
        else:
            self.refunds += 1
            self.refunded_minor += fact.amount_minor

    def columns(self) -> tuple[int, ...]:
        return (
            self.orders,
            self.order_value_minor,
            self.payments,
            self.captured_minor,
            self.refunds,
            self.refunded_minor,
            self.fees_minor,
        )


_FACT_KINDS: Final[dict[str, FactKind]] = {
    money_rule.PLACED: "order",
    money_rule.CAPTURED: "payment",
    money_rule.REFUNDED: "refund",
}


def zone(name: str) -> tzinfo:
    """The time zone called ``name``; ``ValueError`` naming it if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown time zone {name!r}") from e


def parse(message: dict[str, Any], tz: tzinfo) -> RecapFact | SellerRegistered | None:
    """The recap fact of one decoded message; raises ``PoisonMessage`` if unusable."""
    data = message["data"]
    if message["type"] == "seller.registered":
        district = envelope.optional_text(data, "district") or NO_DISTRICT
        return SellerRegistered(message["position"], envelope.text(data, "seller_id"), district)
    kind = _FACT_KINDS.get(message["type"])
    if kind is None:
        return None
    currency = envelope.currency(data)
    fee = envelope.amount_minor(data, "fee", currency, absent_ok=True) if kind == "payment" else 0
    # positional: keywords cost a NamedTuple as much again
    return RecapFact(
        message["position"],
        kind,
        envelope.text(data, "seller_id"),
        envelope.local_day(message["occurred_at"], tz),
        envelope.text(data, "channel"),
        currency,
        envelope.amount_minor(data, "amount", currency),
        fee,
    )


#: Parsed recently, by ``id`` of the message: each entry holds the message
#: itself, so its ``id`` cannot be handed to another while the entry lives.
#: About two batches of the consumers.
_PARSED_MAX: Final = 8192
_parsed: collections.OrderedDict[
    int, tuple[dict[str, Any], tzinfo, RecapFact | SellerRegistered | None]
] = collections.OrderedDict()


def parse_shared(message: dict[str, Any], tz: tzinfo) -> RecapFact | SellerRegistered | None:
    """``parse(message, tz)``, once per message object for both recap models.

    ``recaps`` and ``city`` read the same facts from a message; their
    consumers get the same message object (the decoded message is shared,
    ``projections/batch.py``). The facts are frozen, so one result serves
    both. A poison message is not kept (it raises again). A rebuild does
    not need this: it parses once for both through ``shared_parse``.
    """
    key = id(message)
    hit = _parsed.get(key)
    if hit is not None and hit[0] is message and hit[1] is tz:
        return hit[2]
    fact = parse(message, tz)
    if len(_parsed) >= _PARSED_MAX:
        _parsed.popitem(last=False)  # the oldest
    _parsed[key] = (message, tz, fact)
    return fact


def _shared_parse(tz: tzinfo) -> tuple[Hashable, Callable[[dict[str, Any]], Any]]:
    """Both recap models' ``shared_parse``: the same facts, registrations included
    (``fold_seller_recaps`` skips them)."""
    return ("recaps.parse", tz), functools.partial(parse, tz=tz)


SellerDayKey = tuple[str, date, str, str]  # seller_id, day, channel, currency


def fold_seller_recaps(
    facts: Iterable[RecapFact | SellerRegistered],
) -> dict[SellerDayKey, RecapDelta]:
    """Sums per ``(seller_id, day, channel, currency)``."""
    rows: dict[SellerDayKey, RecapDelta] = {}
    for f in facts:
        if isinstance(f, RecapFact):
            key = (f.seller_id, f.day, f.channel, f.currency)
            d = rows.get(key)
            if d is None:
                d = rows[key] = RecapDelta()
            d.add(f)
    return rows


@dataclass(slots=True)
class CityChanges:
    #: seller_id -> district, from the registrations in this batch.
    sellers: dict[str, str] = field(default_factory=dict)
    #: (day, channel, currency) -> sums
    channels: dict[tuple[date, str, str], RecapDelta] = field(default_factory=dict)
    #: (day, district, currency) -> sums
    districts: dict[tuple[date, str, str], RecapDelta] = field(default_factory=dict)
    #: (day, seller_id) -> the seller's district: who was active that day
    active: dict[tuple[date, str], str] = field(default_factory=dict)


def fold_city(
    facts: Iterable[RecapFact | SellerRegistered], districts: Mapping[str, str]
) -> CityChanges:
    """Sums per channel and per district, and the active sellers, for the city recap.

    ``districts`` maps the sellers registered before this batch to their
    district; registrations inside the batch take effect from their position.
    """
    changes = CityChanges()
    sellers, channels, by_district = changes.sellers, changes.channels, changes.districts
    active = changes.active
    for f in facts:
        if isinstance(f, SellerRegistered):
            sellers[f.seller_id] = f.district
            continue
        district = sellers.get(f.seller_id)
        if district is None:
            district = districts.get(f.seller_id, NO_DISTRICT)
        day, currency = f.day, f.currency
        d = channels.get((day, f.channel, currency))
        if d is None:
            d = channels[(day, f.channel, currency)] = RecapDelta()
        d.add(f)
        d = by_district.get((day, district, currency))
        if d is None:
            d = by_district[(day, district, currency)] = RecapDelta()
        d.add(f)
        if (day, f.seller_id) not in active:
            active[(day, f.seller_id)] = district
    return changes


_SUM_COLUMNS: Final = (
    "orders",
    "order_value_minor",
    "payments",
    "captured_minor",
    "refunds",
    "refunded_minor",
    "fees_minor",
)
#: Money sums are ``numeric``: a day's total across sellers can pass 64 bits even
#: though every amount and every seller's running total fits (the write side
#: checks those); a bigint overflow there stalled the read model for good.
_MONEY_SUM: Final = "numeric(40, 0)"
_SUM_TYPES: Final = {c: _MONEY_SUM if c.endswith("_minor") else "bigint" for c in _SUM_COLUMNS}
_SUM_DDL: Final = ",\n".join(f"    {c} {t} NOT NULL DEFAULT 0" for c, t in _SUM_TYPES.items())
_SUM_UPDATE: Final = ",\n".join(f"    {c} = t.{c} + EXCLUDED.{c}" for c in _SUM_COLUMNS)
_SUM_LIST: Final = ", ".join(_SUM_COLUMNS)


def _sum_upsert(table: str, keys: Sequence[tuple[str, str]]) -> str:
    """``INSERT ... SELECT FROM unnest(...) ON CONFLICT (keys) DO UPDATE`` adding the sums."""
    names = [k for k, _ in keys]
    params = [f"${i}::{t}[]" for i, (_, t) in enumerate(keys, start=1)]
    params += [
        f"${i}::{'numeric' if t == _MONEY_SUM else t}[]"
        for i, t in enumerate(_SUM_TYPES.values(), start=len(keys) + 1)
    ]
    return f"""
        INSERT INTO {table} AS t ({", ".join(names)}, {_SUM_LIST})
        SELECT * FROM unnest({", ".join(params)})
        ON CONFLICT ({", ".join(names)}) DO UPDATE SET
        {_SUM_UPDATE}"""


def _widen_sums(table: str) -> str:
    """Turns the money sums of a table made before they were ``numeric`` into ``numeric``."""
    alters = ", ".join(
        f"ALTER COLUMN {c} TYPE {t}" for c, t in _SUM_TYPES.items() if t == _MONEY_SUM
    )
    return f"""
        DO $$ BEGIN
            IF EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = current_schema() AND table_name = '{table}'
                         AND column_name = 'captured_minor' AND data_type = 'bigint') THEN
                ALTER TABLE {table} {alters};
            END IF;
        END $$"""


def _sum_args(rows: Mapping[tuple[Any, ...], RecapDelta]) -> list[list[Any]]:
    items = sorted(rows.items())
    width = len(items[0][0]) if items else 0
    keys = [[k[i] for k, _ in items] for i in range(width)]
    sums = [[d.columns()[i] for _, d in items] for i in range(len(_SUM_COLUMNS))]
    return keys + sums


class SellerRecapsProjection(Projection):
    name = "recaps"
    tables = ("proj_seller_daily",)

    def __init__(self, *, timezone: str = DEFAULT_TIMEZONE, suffix: str = "") -> None:
        super().__init__(suffix=suffix)
        self.zone = zone(timezone)
        daily = self.table("proj_seller_daily")
        self._ddl = [
            f"""
            CREATE TABLE IF NOT EXISTS {daily} (
                seller_id text NOT NULL,
                day date NOT NULL,
                channel text NOT NULL,
                currency text NOT NULL,
            {_SUM_DDL},
                CONSTRAINT {daily}_pkey PRIMARY KEY (seller_id, day, channel, currency)
            )""",
            _widen_sums(daily),
        ]
        self._upsert = _sum_upsert(
            daily,
            [("seller_id", "text"), ("day", "date"), ("channel", "text"), ("currency", "text")],
        )

    def ddl(self) -> list[str]:
        return list(self._ddl)

    def parse(self, message: dict[str, Any]) -> RecapFact | None:
        fact = parse_shared(message, self.zone)
        return fact if isinstance(fact, RecapFact) else None

    def shared_parse(self) -> tuple[Hashable, Callable[[dict[str, Any]], Any]]:
        return _shared_parse(self.zone)

    async def apply(self, conn: Connection, facts: Sequence[RecapFact | SellerRegistered]) -> None:
        rows = fold_seller_recaps(facts)
        if rows:
            await conn.execute(self._upsert, *_sum_args(rows))


class CityRecapProjection(Projection):
    name = "city"
    tables = (
        "proj_city_sellers",
        "proj_city_daily",
        "proj_city_district_daily",
        "proj_city_active_sellers",
        "proj_city_active_counts",
    )

    def __init__(self, *, timezone: str = DEFAULT_TIMEZONE, suffix: str = "") -> None:
        super().__init__(suffix=suffix)
        self.zone = zone(timezone)
        sellers = self.table("proj_city_sellers")
        daily = self.table("proj_city_daily")
        district_daily = self.table("proj_city_district_daily")
        active = self.table("proj_city_active_sellers")
        counts = self.table("proj_city_active_counts")
        self._ddl = [
            f"""
            CREATE TABLE IF NOT EXISTS {sellers} (
                seller_id text NOT NULL,
                district text NOT NULL,
                CONSTRAINT {sellers}_pkey PRIMARY KEY (seller_id)
            )""",
            f"""
            CREATE TABLE IF NOT EXISTS {daily} (
                day date NOT NULL,
                channel text NOT NULL,
                currency text NOT NULL,
            {_SUM_DDL},
                CONSTRAINT {daily}_pkey PRIMARY KEY (day, channel, currency)
            )""",
            f"""
            CREATE TABLE IF NOT EXISTS {district_daily} (
                day date NOT NULL,
                district text NOT NULL,
                currency text NOT NULL,
            {_SUM_DDL},
                CONSTRAINT {district_daily}_pkey PRIMARY KEY (day, district, currency)
            )""",
            f"""
            CREATE TABLE IF NOT EXISTS {active} (
                day date NOT NULL,
                seller_id text NOT NULL,
                district text NOT NULL,
                CONSTRAINT {active}_pkey PRIMARY KEY (day, seller_id)
            )""",
            _widen_sums(daily),
            _widen_sums(district_daily),
            # how many sellers were active per day and district: a range of days
            # reads these few rows, not every active seller's; counted from the
            # active sellers once when the table is new (a model made before it)
            f"""
            DO $$ BEGIN
                IF to_regclass('{counts}') IS NULL THEN
                    CREATE TABLE {counts} (
                        day date NOT NULL,
                        district text NOT NULL,
                        sellers bigint NOT NULL,
                        CONSTRAINT {counts}_pkey PRIMARY KEY (day, district)
                    );
                    INSERT INTO {counts}
                        SELECT day, district, count(*) FROM {active} GROUP BY day, district;
                END IF;
            END $$""",
        ]
        self._load_districts = (
            f"SELECT seller_id, district FROM {sellers} WHERE seller_id = ANY($1::text[])"
        )
        self._upsert_sellers = f"""
            INSERT INTO {sellers} (seller_id, district)
            SELECT * FROM unnest($1::text[], $2::text[])
            ON CONFLICT (seller_id) DO UPDATE SET district = EXCLUDED.district"""
        self._upsert_daily = _sum_upsert(
            daily, [("day", "date"), ("channel", "text"), ("currency", "text")]
        )
        self._upsert_district = _sum_upsert(
            district_daily, [("day", "date"), ("district", "text"), ("currency", "text")]
        )
        # the first district seen for a seller on a day stays (DO NOTHING), as in fold_city
        self._insert_active = f"""
            INSERT INTO {active} (day, seller_id, district)
            SELECT * FROM unnest($1::date[], $2::text[], $3::text[])
            ON CONFLICT (day, seller_id) DO NOTHING
            RETURNING day, district"""
        self._count_active = f"""
            INSERT INTO {counts} AS c (day, district, sellers)
            SELECT * FROM unnest($1::date[], $2::text[], $3::bigint[])
            ON CONFLICT (day, district) DO UPDATE SET sellers = c.sellers + EXCLUDED.sellers"""

    def ddl(self) -> list[str]:
        return list(self._ddl)

    def parse(self, message: dict[str, Any]) -> RecapFact | SellerRegistered | None:
        return parse_shared(message, self.zone)

    def shared_parse(self) -> tuple[Hashable, Callable[[dict[str, Any]], Any]]:
        return _shared_parse(self.zone)

    async def apply(self, conn: Connection, facts: Sequence[RecapFact | SellerRegistered]) -> None:
        wanted = sorted({f.seller_id for f in facts if isinstance(f, RecapFact)})
        districts: dict[str, str] = {}
        if wanted:
            rows = await conn.fetch(self._load_districts, wanted)
            districts = {r["seller_id"]: r["district"] for r in rows}
        changes = fold_city(facts, districts)
        if changes.sellers:
            items = sorted(changes.sellers.items())
            await conn.execute(self._upsert_sellers, [k for k, _ in items], [v for _, v in items])
        if changes.channels:
            await conn.execute(self._upsert_daily, *_sum_args(changes.channels))
        if changes.districts:
            await conn.execute(self._upsert_district, *_sum_args(changes.districts))
        if changes.active:
            items_ = sorted(changes.active.items())
            # only the sellers not yet active that day come back: those are counted
            new = await conn.fetch(
                self._insert_active,
                [k[0] for k, _ in items_],
                [k[1] for k, _ in items_],
                [v for _, v in items_],
            )
            counted = sorted(Counter((r["day"], r["district"]) for r in new).items())
            if counted:
                await conn.execute(
                    self._count_active,
                    [k[0] for k, _ in counted],
                    [k[1] for k, _ in counted],
                    [n for _, n in counted],
                )
