"""The cluster scenarios' own figures, beside the fault suite's (``scenario.FIGURES_ENV``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from tests.integration.faults.scenario import FIGURES_ENV

__all__ = ["record"]


def record(scenario: str, notes: dict[str, Any]) -> None:
    """Appends ``{"scenario", "cluster": notes}`` to the figures file, when one is named."""
    path = os.environ.get(FIGURES_ENV)
    if path:
        with Path(path).open("ab") as f:
            f.write(orjson.dumps({"scenario": scenario, "cluster": notes}) + b"\n")
