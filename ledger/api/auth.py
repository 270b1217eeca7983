"""Who calls: API keys (stored hashed), the roles a handler admits, least privilege."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from aiohttp import web

from ledger.api.context import KEY_CACHE as _KEYS
from ledger.api.context import STORE
from ledger.domain.commands import (
    CancelOrder,
    CapturePayment,
    Command,
    OrderFact,
    PlaceOrder,
    SendPayout,
)
from ledger.domain.errors import Forbidden, Unauthorized
from ledger.store import LedgerStore

__all__ = [
    "PRINCIPAL",
    "ROLES",
    "Principal",
    "authenticate",
    "hash_key",
    "install_admin_key",
    "principal",
    "require",
    "roles_of",
]

ROLES: Final = frozenset({"admin", "gateway", "payouts", "seller", "auditor"})
#: The one gateway a seller key may name: money the seller took in hand
#: (a WhatsApp or market-stall order no gateway reports, issue 14).
SELLER_GATEWAY: Final = "cash"
PRINCIPAL: Final = web.RequestKey("principal", object)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls: a role, and what the key is bound to (a seller key's seller;
    a gateway key's seller and gateway name, when it was made with them)."""

    role: str
    seller_id: str | None
    gateway: str | None = None

    def may_see_seller(self, seller_id: str) -> bool:
        return self.role in ("admin", "auditor") or (
            self.role == "seller" and self.seller_id == seller_id
        )

    def authorize(self, command: Command) -> Command:
        """The command as this key may post it, or ``Forbidden`` (least privilege).

        A payout moves the seller's money out: only ``admin`` and ``payouts``
        keys post one, and a ``payouts`` key posts nothing else. A gateway key
        bound to a gateway posts only facts naming that gateway; one bound to a
        seller only that seller's facts (checked where the order is loaded: the
        command carries the scope, and another seller's order is unknown to it).
        A seller key records its own orders no gateway reports: ``order.placed``,
        ``order.cancelled``, and ``payment.captured`` with gateway ``cash``.
        """
        if self.role == "admin":
            return command
        if self.role == "seller":
            self._seller_may_post(command)
        if isinstance(command, SendPayout):
            if self.role != "payouts":
                raise Forbidden("payouts need an admin or payouts key", field="type")
        elif self.role == "payouts":
            raise Forbidden("a payouts key posts only payout.sent", field="type")
        gateway = command.gateway if isinstance(command, OrderFact) else None
        if self.gateway is not None and gateway != self.gateway:
            raise Forbidden(
                f"this key posts only {self.gateway}'s facts (with gateway {self.gateway})",
                field="gateway",
            )
        if self.seller_id is not None:
            seller_id = command.seller_id if isinstance(command, PlaceOrder | SendPayout) else None
            if seller_id not in (None, self.seller_id):
                raise Forbidden(f"this key posts only seller {self.seller_id}'s facts",
                                field="seller_id")  # fmt: skip
            return replace(command, seller_scope=self.seller_id)
        return command

    def _seller_may_post(self, command: Command) -> None:
        if not isinstance(command, PlaceOrder | CancelOrder | CapturePayment):
            raise Forbidden(
                "a seller key posts only order.placed, order.cancelled and"
                f" payment.captured with gateway {SELLER_GATEWAY}",
                field="type",
            )
        gateway = command.gateway if isinstance(command, OrderFact) else None
        if gateway not in (None, SELLER_GATEWAY) or (
            isinstance(command, CapturePayment) and gateway != SELLER_GATEWAY
        ):
            raise Forbidden(
                f"a seller key records only payments in {SELLER_GATEWAY}"
                f" (gateway {SELLER_GATEWAY}); a gateway reports the others",
                field="gateway",
            )
        if self.seller_id is None:  # a seller key always names one (``POST /v1/keys``)
            raise Forbidden("this seller key names no seller", field="seller_id")


def require(*roles: str) -> Callable[[Callable[..., Awaitable[web.StreamResponse]]], Any]:
    """Marks a handler with the roles that may call it (checked by the auth middleware)."""

    def mark(handler: Callable[..., Awaitable[web.StreamResponse]]) -> Any:
        handler.roles = frozenset(roles)  # type: ignore[attr-defined]
        return handler

    return mark


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]  # type: ignore[return-value]


def hash_key(key: str) -> bytes:
    # a header's bytes that are not UTF-8 arrive as surrogates: hashed as they
    # came (an unknown key, 401), never an encoding error
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def roles_of(handler: object) -> frozenset[str] | None:
    """The roles ``@require`` gave ``handler``; ``None`` for a public route."""
    roles = getattr(handler, "roles", None)
    return roles if isinstance(roles, frozenset) else None


@web.middleware
async def authenticate(
    request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    roles = getattr(request.match_info.handler, "roles", None)
    if roles is None:  # public: /healthz, /metrics, and 404/405 answers
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("send Authorization: Bearer <key>")
    digest = hash_key(key.strip())
    cache: dict[bytes, Principal] = request.app[_KEYS]
    found = cache.get(digest)
    if found is None:
        row = await request.app[STORE].find_key(digest)
        if row is None:
            raise Unauthorized("unknown key")
        found = Principal(*row)
        cache[digest] = found
    if found.role not in roles:
        raise Forbidden(f"role {found.role} may not call this")
    request[PRINCIPAL] = found
    return await handler(request)


async def install_admin_key(store: LedgerStore, admin_key: str | None) -> None:
    """The first admin key comes from ``OMNILEDGER_ADMIN_KEY`` at start-up (stored hashed)."""
    if admin_key:
        await store.add_key(hash_key(admin_key), "admin", None)
