"""Read models built from the ledger's stream: seller balances, daily recaps, the city recap.

The relay publishes every committed event, in position order, to the
JetStream stream ``LEDGER`` (subjects ``ledger.<type>``). Here, one durable
pull consumer per read model applies each batch to PostgreSQL read tables and
advances the model's position in the same transaction, so a redelivered or
duplicated message changes nothing (DESIGN rule 7). Any model can be rebuilt
from the log and swapped in while its consumer keeps running.

- ``consumer.py``  the one pull loop (fetch -> apply + position -> ack / nak / term)
                   with ``puller.py`` (its pull requests), ``cursor.py`` (the durable's
                   alignment) and ``batch.py`` (a batch's items, gaps filled from the log)
- ``balances.py``  per seller and currency: pending, available and totals
- ``recaps.py``    per seller, day and channel; the city per channel and district
- ``registry.py``  per seller: name, district, curation status, certificates held
- ``orders.py``    per order: its seller, amounts and status; per payout (a seller's page)
- ``dasbor_reads.py`` the queries behind the dasbor's pages
- ``reads.py``     the queries behind ``GET /v1/sellers/.../balance``, ``.../recaps``,
                   ``/v1/recaps/daily`` and ``/v1/projections``
- ``rebuild.py``   rebuild into shadow tables, then swap atomically
- ``service.py``   ``run_projections``: a consumer per read model (``omniledger project``)
- ``schema.py``    idempotent DDL; ``envelope.py`` message decoding; ``catalog.py`` names

Read models (``name``: tables): ``balances``: ``proj_balances``,
``proj_balance_orders``; ``recaps``: ``proj_seller_daily``; ``city``:
``proj_city_sellers``, ``proj_city_daily``, ``proj_city_district_daily``,
``proj_city_active_sellers``, ``proj_city_active_counts``; ``registry``:
``proj_registry``; ``orders``: ``proj_orders``, ``proj_payouts``. Shared:
``projection_positions``, ``projection_poison``.

This package imports ``ledger.contract.messages`` and ``ledger.domain`` only; nothing
runs at import time. ``run_projections`` (``service.py``) is the entry for
``omniledger project`` (and ``up``); it, ``connect_nats`` and ``Consumer`` are
imported on first use, so that the rebuild, the checks and the reads do not
load nats-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from projections.catalog import PROJECTION_NAMES
from projections.rebuild import RebuildResult, rebuild, rebuild_all
from projections.recaps import DEFAULT_TIMEZONE

if TYPE_CHECKING:
    from projections.consumer import DEFAULT_STREAM, Consumer
    from projections.service import connect_nats, run_projections

__all__ = [
    "DEFAULT_STREAM",
    "DEFAULT_TIMEZONE",
    "PROJECTION_NAMES",
    "Consumer",
    "RebuildResult",
    "connect_nats",
    "rebuild",
    "rebuild_all",
    "run_projections",
]

#: the exports that need nats-py, and the module each is in
_LAZY = {
    "DEFAULT_STREAM": "projections.consumer",
    "Consumer": "projections.consumer",
    "connect_nats": "projections.service",
    "run_projections": "projections.service",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
