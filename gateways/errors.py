"""The errors the gateways add: one to the ledger's tree, and the status call's.

Everything else an adapter raises is already in ``ledger.domain.errors``:
``BadRequest`` for a body that is not a JSON object, ``ValidationError`` for a
readable notification that lacks a field or carries a bad amount or time.
``StatusUnavailable`` lives here rather than in ``gateways.midtrans_api`` so
that ``gateways.intake``, which decides what it means, need not import aiohttp.
"""

from __future__ import annotations

from ledger.domain.errors import Unauthorized

__all__ = ["SignatureInvalid", "StatusUnavailable"]


class SignatureInvalid(Unauthorized):
    """The gateway's signature or token is missing or does not match: 401, nothing recorded."""

    code = "invalid_signature"


class StatusUnavailable(Exception):
    """No usable answer: unreachable, timed out, not 200, too large or not a JSON object."""
