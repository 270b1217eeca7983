"""The read models by name: ``balances``, ``recaps``, ``city``, ``registry``, ``orders``."""

from __future__ import annotations

from typing import Final

from projections.balances import BalancesProjection
from projections.orders import OrdersProjection
from projections.projection import Projection
from projections.recaps import DEFAULT_TIMEZONE, CityRecapProjection, SellerRecapsProjection
from projections.registry import RegistryProjection

__all__ = ["PROJECTION_NAMES", "projection"]

PROJECTION_NAMES: Final = ("balances", "recaps", "city", "registry", "orders")


def projection(name: str, *, timezone: str = DEFAULT_TIMEZONE, suffix: str = "") -> Projection:
    """A new instance of the read model ``name``; ``ValueError`` if there is none."""
    if name == "balances":
        return BalancesProjection(suffix=suffix)
    if name == "recaps":
        return SellerRecapsProjection(timezone=timezone, suffix=suffix)
    if name == "city":
        return CityRecapProjection(timezone=timezone, suffix=suffix)
    if name == "registry":
        return RegistryProjection(suffix=suffix)
    if name == "orders":
        return OrdersProjection(suffix=suffix)
    raise ValueError(f"unknown projection {name!r}; known: {', '.join(PROJECTION_NAMES)}")
