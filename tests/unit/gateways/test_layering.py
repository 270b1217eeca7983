"""The gateway workflow and adapters speak no HTTP: only ``routes`` and ``midtrans_api`` do.

Checked in a fresh interpreter, so a module another test imported first
cannot hide an import of aiohttp.
"""

from __future__ import annotations

import subprocess
import sys

#: Everything in gateways/ but the HTTP edge (``routes``, ``midtrans_api``).
NO_HTTP = (
    "gateways.intake",
    "gateways.suspense",
    "gateways._commands",
    "gateways.midtrans",
    "gateways.xendit",
    "gateways.shopee",
)


def test_the_workflow_and_the_adapters_import_no_aiohttp() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {NO_HTTP!r}:\n"
        "    importlib.import_module(name)\n"
        "    assert 'aiohttp' not in sys.modules, name\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
