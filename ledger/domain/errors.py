"""The error tree. Each class carries a stable snake_case ``code`` (CONTRACT.md).

HTTP statuses are not decided here: ``ledger/api/http.py`` maps classes to
statuses in one table, looked up along the exception's MRO. Stdlib only.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadRequest",
    "ChannelAccountTaken",
    "CurrencyMismatch",
    "DuplicateKey",
    "Forbidden",
    "IdempotencyConflict",
    "InsufficientBalance",
    "LedgerError",
    "NotFound",
    "OrderClosed",
    "OrderExists",
    "OrderNotPaid",
    "Overpayment",
    "PayloadTooLarge",
    "PaymentExists",
    "PayoutExists",
    "RefundExceedsCaptured",
    "RefundExists",
    "RuleViolation",
    "SellerExists",
    "SuspenseClosed",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "UnknownOrder",
    "UnknownSeller",
    "ValidationError",
]


class LedgerError(Exception):
    """Base of every error the ledger answers with a code."""

    code: ClassVar[str] = "ledger_error"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.details)
        return body


class BadRequest(LedgerError):
    """The body cannot be read at all (not JSON, not an object)."""

    code = "bad_request"


class PayloadTooLarge(LedgerError):
    code = "payload_too_large"


class ValidationError(LedgerError):
    """A field is missing or malformed (an amount with a fraction, a naive time)."""

    code = "validation_error"


class DuplicateKey(ValidationError):
    """A JSON object names the same key twice: which one counts is the parser's guess."""

    code = "duplicate_key"


class Unauthorized(LedgerError):
    code = "unauthorized"


class Forbidden(LedgerError):
    code = "forbidden"


class NotFound(LedgerError):
    code = "not_found"


class IdempotencyConflict(LedgerError):
    """The same idempotency key came back with a different body."""

    code = "idempotency_conflict"


class SellerExists(LedgerError):
    code = "seller_exists"


class ChannelAccountTaken(LedgerError):
    """A seller registered with a channel account another seller holds."""

    code = "channel_account_taken"


class Unavailable(LedgerError):
    """PostgreSQL (or another part we need) cannot be reached right now."""

    code = "unavailable"


class TooManyRequests(LedgerError):
    """An expensive read past its limit (time travel): try again after ``Retry-After``."""

    code = "too_many_requests"


class RuleViolation(LedgerError):
    """A command that breaks a ledger rule: refused, nothing recorded."""

    code = "rule_violation"


class UnknownSeller(RuleViolation):
    code = "unknown_seller"


class UnknownOrder(RuleViolation):
    code = "unknown_order"


class OrderExists(RuleViolation):
    code = "order_exists"


class OrderClosed(RuleViolation):
    code = "order_closed"


class OrderNotPaid(RuleViolation):
    """Kept for clarity in messages; contract code is ``order_closed``'s sibling."""

    code = "order_not_paid"


class Overpayment(RuleViolation):
    code = "overpayment"


class RefundExceedsCaptured(RuleViolation):
    code = "refund_exceeds_captured"


class InsufficientBalance(RuleViolation):
    code = "insufficient_balance"


class CurrencyMismatch(RuleViolation):
    code = "currency_mismatch"


class PaymentExists(RuleViolation):
    """A gateway payment (gateway and its reference) already captured: credited once."""

    code = "payment_exists"


class RefundExists(RuleViolation):
    """A gateway refund (gateway and its reference) already recorded: returned once."""

    code = "refund_exists"


class PayoutExists(RuleViolation):
    """A payout reference already recorded: the seller is paid once per transfer."""

    code = "payout_exists"


class SuspenseClosed(RuleViolation):
    code = "suspense_closed"
