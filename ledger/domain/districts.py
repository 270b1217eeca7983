"""The districts a seller may be registered in: the city recap's.

Kept apart from the Seller aggregate so that reading the settings (every
command) does not import the event-sourcing library.
"""

from __future__ import annotations

__all__ = ["MAKASSAR_DISTRICTS", "district_in"]

#: Makassar's fifteen kecamatan (districts) since 2015, when Kepulauan
#: Sangkarrang was made of Ujung Tanah's islands: the city recap's districts
#: unless ``OMNILEDGER_DISTRICTS`` names others.
MAKASSAR_DISTRICTS: tuple[str, ...] = (
    "Biringkanaya",
    "Bontoala",
    "Kepulauan Sangkarrang",
    "Makassar",
    "Mamajang",
    "Manggala",
    "Mariso",
    "Panakkukang",
    "Rappocini",
    "Tallo",
    "Tamalanrea",
    "Tamalate",
    "Ujung Pandang",
    "Ujung Tanah",
    "Wajo",
)


def district_in(district: str, districts: tuple[str, ...]) -> str | None:
    """``district`` spelled as the list spells it (case and spaces aside), or None."""
    wanted = " ".join(district.split()).casefold()
    return next((d for d in districts if d.casefold() == wanted), None)
