"""One stack (own PostgreSQL, own NATS, ``omniledger up``) shared by the module's faults."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.faults.stack import Stack, running_stack


@pytest.fixture(scope="module")
async def stack() -> AsyncIterator[Stack]:
    # Not under pytest's basetemp: every pytest session that starts on the machine
    # strips group/other bits from /tmp/pytest-of-<user>, and the PostgreSQL account
    # (root runs it as ``pgserver``) then loses its way to the data folder mid-run.
    root = Path(tempfile.mkdtemp(prefix="omniledger-faults-"))
    try:
        async with running_stack(root) as s:
            yield s
    finally:
        shutil.rmtree(root, ignore_errors=True)
