"""Loopback ports for the servers a test starts, never the same one twice.

``bind(("127.0.0.1", 0))`` hands out a port from the kernel's ephemeral range
and forgets it once the socket closes: two calls in a row can return the same
number (CI once gave a NATS node the same client and cluster port), and every
outgoing connection a test makes draws from that same range. So ports come
from below it, are checked by binding, and are remembered for the life of the
test process.
"""

from __future__ import annotations

import random
import socket

# below Linux's default ip_local_port_range (32768-60999): no outgoing
# connection is given one of these by the kernel
_LOW, _HIGH = 20000, 32000
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback TCP port that is free now and that no earlier call returned."""
    for _ in range(1000):
        port = random.randrange(_LOW, _HIGH)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {_LOW}-{_HIGH} after 1000 tries")
