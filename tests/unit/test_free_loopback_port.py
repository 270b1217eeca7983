"""free_loopback_port: servers a test or ``up`` starts never share a port."""

from __future__ import annotations

import socket

import pytest

from ledger.ops import embedded
from ledger.ops.embedded import EmbeddedServerError, free_loopback_port


def test_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    ports = [free_loopback_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(20000 <= p < 32000 for p in ports)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A range of three ports, one listened on by us: the other two come out,
    then none."""
    low = free_loopback_port()
    monkeypatch.setattr(embedded, "_PORTS_LOW", low)
    monkeypatch.setattr(embedded, "_PORTS_HIGH", low + 3)
    monkeypatch.setattr(embedded, "_ports_handed_out", set())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", low))
        taken.listen()
        got = {free_loopback_port(), free_loopback_port()}
        assert got == {low + 1, low + 2}
        with pytest.raises(EmbeddedServerError, match="no free loopback port"):
            free_loopback_port()
