"""The seller registry: one row per seller, its curation, and which certificates it has.

For the incubator's and the city's pages (issue 14): name, district, the
incubator's curation status (``pending`` until a ``seller.curated`` says
otherwise) and, for each of NIB, PIRT, halal, SNI and HKI, whether the seller
has it. A seller has an NIB when it registered with one (``seller.registered``'s
``nib``) or its latest curation lists one; the other four come from the latest
curation only (each curation states the whole list: the Seller aggregate
replaces it). A certificate's ``valid_until`` is not judged here: whether it
has passed depends on the day it is read, not on the log.

``fold`` is pure: it is given the rows of the sellers a batch curates that
were registered before it, and returns the new rows of every seller touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ledger.domain.sellers import CERTIFICATION_KINDS
from ledger.store.connection import Connection
from projections import envelope
from projections.projection import Projection
from projections.recaps import NO_DISTRICT

__all__ = [
    "KINDS",
    "Curated",
    "Registered",
    "RegistryProjection",
    "SellerEntry",
    "fold",
    "parse",
]

#: The certificates the registry tracks, in the order pages show them.
KINDS: Final = ("nib", "pirt", "halal", "sni", "hki")
assert set(KINDS) == CERTIFICATION_KINDS
#: Before any curation (``Seller.__init__``'s).
UNCURATED: Final = "pending"


@dataclass(frozen=True, slots=True)
class Registered:
    position: int
    seller_id: str
    name: str
    district: str
    nib: bool


@dataclass(frozen=True, slots=True)
class Curated:
    position: int
    seller_id: str
    status: str
    kinds: frozenset[str]


@dataclass(frozen=True, slots=True)
class SellerEntry:
    name: str
    district: str
    status: str
    #: registered with an NIB (kept apart: a later curation does not take it away)
    nib_registered: bool
    #: the kinds the latest curation lists
    curated_kinds: frozenset[str]
    last_position: int

    def has(self, kind: str) -> bool:
        return kind in self.curated_kinds or (kind == "nib" and self.nib_registered)


def parse(message: dict[str, Any]) -> Registered | Curated | None:
    """The registry fact of one decoded message; raises ``PoisonMessage`` if unusable."""
    data = message["data"]
    if message["type"] == "seller.registered":
        return Registered(
            message["position"],
            envelope.text(data, "seller_id"),
            envelope.text(data, "name"),
            envelope.optional_text(data, "district") or NO_DISTRICT,
            bool(envelope.optional_text(data, "nib")),
        )
    if message["type"] == "seller.curated":
        certifications = data.get("certifications") or []
        if not isinstance(certifications, list) or not all(
            isinstance(c, dict) for c in certifications
        ):
            raise envelope.PoisonMessage("data.certifications is not a list of objects")
        # a kind the registry does not track (a later version's) is left out, not poison
        kinds = frozenset(c.get("kind") for c in certifications) & CERTIFICATION_KINDS
        return Curated(
            message["position"],
            envelope.text(data, "seller_id"),
            envelope.text(data, "status"),
            frozenset(str(k) for k in kinds),
        )
    return None


def fold(
    facts: Iterable[Registered | Curated], before: Mapping[str, SellerEntry]
) -> dict[str, SellerEntry]:
    """The new rows of the sellers ``facts`` touch, in position order.

    ``before`` holds the rows of the curated sellers registered before this
    batch. A curation of a seller never registered is skipped (the ledger
    refuses it), as is a second registration (the ledger refuses that too).
    """
    rows: dict[str, SellerEntry] = {}
    for f in facts:
        known = rows.get(f.seller_id) or before.get(f.seller_id)
        if isinstance(f, Registered):
            if known is None:
                rows[f.seller_id] = SellerEntry(
                    f.name, f.district, UNCURATED, f.nib, frozenset(), f.position
                )
        elif known is not None:
            rows[f.seller_id] = dataclasses.replace(
                known, status=f.status, curated_kinds=f.kinds, last_position=f.position
            )
    return rows


class RegistryProjection(Projection):
    name = "registry"
    tables = ("proj_registry",)

    def __init__(self, *, suffix: str = "") -> None:
        super().__init__(suffix=suffix)
        table = self.table("proj_registry")
        has = ",\n".join(f"    has_{k} boolean NOT NULL" for k in KINDS)
        self._ddl = [
            f"""
            CREATE TABLE IF NOT EXISTS {table} (
                seller_id text NOT NULL,
                name text NOT NULL,
                district text NOT NULL,
                status text NOT NULL,
                nib_registered boolean NOT NULL,
                curated_kinds text[] NOT NULL,
            {has},
                last_position bigint NOT NULL,
                CONSTRAINT {table}_pkey PRIMARY KEY (seller_id)
            )"""
        ]
        self._load = f"""
            SELECT seller_id, name, district, status, nib_registered, curated_kinds, last_position
            FROM {table} WHERE seller_id = ANY($1::text[])"""
        has_params = ", ".join(f"${i}::boolean[]" for i in range(8, 8 + len(KINDS)))
        has_columns = ", ".join(f"has_{k}" for k in KINDS)
        self._upsert = f"""
            INSERT INTO {table} (seller_id, name, district, status, nib_registered,
                                 curated_kinds, last_position, {has_columns})
            SELECT s, n, d, st, nr, string_to_array(ck, ','), lp, {has_columns}
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[],
                        $6::text[], $7::bigint[], {has_params})
                 AS u(s, n, d, st, nr, ck, lp, {has_columns})
            ON CONFLICT (seller_id) DO UPDATE SET
                status = EXCLUDED.status, curated_kinds = EXCLUDED.curated_kinds,
                last_position = EXCLUDED.last_position,
                {", ".join(f"has_{k} = EXCLUDED.has_{k}" for k in KINDS)}"""

    def ddl(self) -> list[str]:
        return list(self._ddl)

    def parse(self, message: dict[str, Any]) -> Registered | Curated | None:
        return parse(message)

    async def apply(self, conn: Connection, facts: Sequence[Registered | Curated]) -> None:
        wanted = sorted({f.seller_id for f in facts if isinstance(f, Curated)})
        before: dict[str, SellerEntry] = {}
        if wanted:
            for r in await conn.fetch(self._load, wanted):
                before[r["seller_id"]] = SellerEntry(
                    r["name"],
                    r["district"],
                    r["status"],
                    r["nib_registered"],
                    frozenset(r["curated_kinds"]),
                    r["last_position"],
                )
        rows = sorted(fold(facts, before).items())
        if not rows:
            return
        # a text[] per row does not pass through unnest(); a joined string does
        # (the kinds are a closed list of plain words)
        await conn.execute(
            self._upsert,
            [s for s, _ in rows],
            [e.name for _, e in rows],
            [e.district for _, e in rows],
            [e.status for _, e in rows],
            [e.nib_registered for _, e in rows],
            [",".join(sorted(e.curated_kinds)) for _, e in rows],
            [e.last_position for _, e in rows],
            *[[e.has(k) for _, e in rows] for k in KINDS],
        )
