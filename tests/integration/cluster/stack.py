"""The fault suite's stack with a 3-node NATS cluster in place of its one NATS server.

``omniledger up`` (API, relay, projections: real processes) is pointed at a
fresh database on the test PostgreSQL and at every node of the cluster
(``OMNILEDGER_NATS_URL`` comma-separated), so it creates the stream
``LEDGER`` with 3 replicas by itself. Everything else (the load, the checks,
the figures) is ``tests/integration/faults/``'s: ``scenario.run`` takes this
stack as it takes its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.errors

from ledger.contract.servers import nats_servers
from tests.integration.cluster.nats_cluster import NatsCluster, NatsNode
from tests.integration.faults.stack import UP_START_TIMEOUT_S, Stack

__all__ = ["ClusterStack"]


class ClusterStack(Stack):
    """``Stack`` whose NATS is ``self.cluster``; its own PostgreSQL is never started."""

    def __init__(self, root: Path, dsn: str) -> None:
        super().__init__(root)
        self.cluster = NatsCluster(root)
        self.deployment.dsn = dsn
        self.deployment.nats_url = self.cluster.url
        self.deployment.stream = "LEDGER"

    async def js_call(self, what: str, *args: Any) -> Any:
        """One JetStream API call through whichever node answers."""
        nc = await nats.connect(servers=nats_servers(self.cluster.url), connect_timeout=2)
        try:
            return await getattr(nc.jetstream(timeout=5), what)(*args)
        finally:
            await nc.close()

    async def stream_leader(self) -> NatsNode:
        info = await self.js_call("stream_info", self.deployment.stream)
        assert info.cluster is not None and info.cluster.leader, info.cluster
        return self.cluster.node(info.cluster.leader)

    async def settled(self, durables: list[str], timeout_s: float = 30.0) -> None:
        """Waits until the stream and each durable consumer have every replica current
        and every node says it is current: a cluster in its steady state."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                infos = [await self.js_call("stream_info", self.deployment.stream)]
                for durable in durables:
                    infos.append(
                        await self.js_call("consumer_info", self.deployment.stream, durable)
                    )
                last = [i.cluster for i in infos]
                if all(
                    i.cluster is not None
                    and i.cluster.leader
                    and len(i.cluster.replicas or []) == len(self.cluster.nodes) - 1
                    and all(r.current and not r.offline for r in i.cluster.replicas or [])
                    for i in infos
                ) and all([await self.cluster.current(n) for n in self.cluster.nodes]):
                    return
            await asyncio.sleep(0.2)
        raise AssertionError(f"the cluster did not settle in {timeout_s} s: {last}")

    async def heal(self) -> None:
        for node in self.cluster.nodes:
            if not node.running:
                self.cluster.spawn(node)
        for node in self.cluster.nodes:
            await self.cluster.wait_current(node, 30.0)
        children = self.children()
        if self.service.proc is None or self.service.proc.returncode is not None:
            await self.start_up()
        elif not (children["relay"] and children["project"]):
            await self.service.stop()
            await self.start_up()

    async def open(self) -> None:
        await self.cluster.start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        await self.service.start(timeout_s=UP_START_TIMEOUT_S)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._session is not None:
                await self._session.close()
        try:
            await self.service.stop()
        finally:
            self.cluster.stop()
            self._thread.shutdown(wait=True)
