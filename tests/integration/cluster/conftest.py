"""One NATS cluster stack (3 nodes, a fresh database, ``omniledger up``) per module, and
the system tests' per-test database, stream and data folder (``deployment``), reused."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.cluster.stack import ClusterStack
from tests.integration.system.conftest import deployment, fresh_db
from tests.support.servers import fresh_database

__all__ = ["cluster_stack", "deployment", "fresh_db"]


@pytest.fixture(scope="module")
async def cluster_stack(pg_admin_dsn: str) -> AsyncIterator[ClusterStack]:
    root = Path(tempfile.mkdtemp(prefix="omniledger-cluster-"))
    try:
        async with fresh_database(pg_admin_dsn, "omniledger_cluster") as dsn:
            stack = ClusterStack(root, dsn)
            try:
                await stack.open()
                yield stack
            finally:
                await stack.close()
    finally:
        if os.environ.get("OMNILEDGER_TEST_KEEP_DIRS"):
            print(f"kept {root} (up.log, nats-N.log, the stores)")
        else:
            shutil.rmtree(root, ignore_errors=True)
