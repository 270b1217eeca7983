"""How ``OMNILEDGER_NATS_URL`` names the NATS servers (CONTRACT section 7).

One URL, or a cluster's URLs separated by commas. Every NATS client of the
ledger (the relay, the projections, ``/healthz``'s probe) is given all of
them: nats-py connects to one and, when it goes, reconnects to another. It
does not split a comma-separated string itself, hence this one parser.
"""

from __future__ import annotations

__all__ = ["nats_servers"]


def nats_servers(nats_url: str) -> list[str]:
    """The URLs in ``nats_url``, in order, blanks and repeats left out."""
    return list(dict.fromkeys(s.strip() for s in nats_url.split(",") if s.strip()))
