"""The one error the gateway adapters add to the ledger's tree.

Everything else an adapter raises is already in ``ledger.domain.errors``:
``BadRequest`` for a body that is not a JSON object, ``ValidationError`` for a
readable notification that lacks a field or carries a bad amount or time.
"""

from __future__ import annotations

from ledger.domain.errors import Unauthorized

__all__ = ["SignatureInvalid"]


class SignatureInvalid(Unauthorized):
    """The gateway's signature or token is missing or does not match: 401, nothing recorded."""

    code = "invalid_signature"
