"""Deciding the facts the ledger records through its own endpoints, not
``POST /v1/events``: seller registration and curation, suspense (keep,
resolve, close) and reconciliation. Each is a decision on a ``Batch``; the
``Ledger`` facade chooses its idempotency key and submits it to the writer.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ledger.app.batch import AlreadyRecorded, Batch
from ledger.app.handlers import decide, require_seller
from ledger.app.repository import new_events, unit_of
from ledger.domain.commands import Command, OrderFact, PlaceOrder, amount_of
from ledger.domain.errors import (
    ChannelAccountTaken,
    NotFound,
    SellerExists,
    SuspenseClosed,
)
from ledger.domain.sellers import Seller, seller_stream_id
from ledger.domain.suspense import Reconciliation, SuspenseEntry, suspense_stream_id
from ledger.store.keys import Claim
from ledger.store.units import Unit

__all__ = [
    "close_suspense",
    "curate_seller",
    "record_reconciliation",
    "record_suspense",
    "register_seller",
    "resolve_suspense",
]


async def register_seller(
    batch: Batch,
    *,
    seller_id: str,
    name: str,
    district: str | None,
    nib: str | None,
    channels: dict[str, str],
    occurred_at: str,
    accounts: tuple[Claim, ...],
) -> Unit:
    stream_id = seller_stream_id(seller_id)
    if await batch.get(stream_id) is not None:
        raise SellerExists(f"seller {seller_id} is already registered", field="seller_id")
    for claim in accounts:
        if await batch.is_taken(claim):
            raise ChannelAccountTaken(
                f"the {claim[1]} account {claim[2]} belongs to another seller",
                field="channels",
            )
    seller = Seller(
        seller_id=seller_id,
        name=name,
        district=district,
        nib=nib,
        channels=channels,
        occurred_at=occurred_at,
    )
    batch.remember(seller, 0)
    unit = unit_of([seller])
    unit.channel_accounts = [(ch, acct, seller_id) for ch, acct in channels.items()]
    for claim in accounts:
        batch.take(claim)
    return unit


async def curate_seller(
    batch: Batch,
    *,
    seller_id: str,
    status: str,
    certifications: list[dict[str, Any]],
    occurred_at: str,
) -> Unit:
    seller = await require_seller(batch, seller_id)
    base = seller.version
    seller.curate(status=status, certifications=certifications, occurred_at=occurred_at)
    batch.remember(seller, base)
    return unit_of([seller])


async def record_suspense(
    batch: Batch, command: Command, *, gateway: str, reason: str, raw: dict[str, Any]
) -> Unit:
    entry = SuspenseEntry(
        suspense_id=str(suspense_stream_id(command.idempotency_key)),
        idempotency_key=command.idempotency_key,
        gateway=gateway,
        reason=reason,
        event=raw,
        amount_minor=amount_of(command) or 0,
        currency=command.currency,
        occurred_at=command.occurred_at.isoformat(),
    )
    batch.remember(entry, 0)
    unit = unit_of([entry])
    unit.suspense = {
        "gateway": gateway,
        "reason": reason,
        "event": raw,
        "amount_minor": amount_of(command) or 0,
        "currency": command.currency,
    }
    return unit


async def resolve_suspense(
    batch: Batch, entry_id: UUID, command: Command, *, occurred_at: str
) -> Unit:
    entry = await batch.get(entry_id)
    if not isinstance(entry, SuspenseEntry):
        raise NotFound("no such suspense entry")
    entry_base = entry.version
    if entry.resolved:
        raise SuspenseClosed("this suspense entry is already resolved")
    applied = await decide(batch, command)
    assert isinstance(command, PlaceOrder | OrderFact)
    assert command.order_id is not None and command.channel is not None
    entry.resolve(channel=command.channel, order_id=command.order_id, occurred_at=occurred_at)
    batch.remember(entry, entry_base)
    applied.events.extend(new_events([entry]))
    applied.base_versions[entry.id] = entry_base
    applied.suspense_resolved = entry.id
    return applied


async def close_suspense(
    batch: Batch, entry_id: UUID, *, channel: str, order_id: str, occurred_at: str
) -> Unit:
    entry = await batch.get(entry_id)
    if not isinstance(entry, SuspenseEntry):
        raise NotFound("no such suspense entry")
    base = entry.version
    entry.resolve(channel=channel, order_id=order_id, occurred_at=occurred_at)
    batch.remember(entry, base)
    unit = unit_of([entry])
    unit.suspense_resolved = entry.id
    return unit


async def record_reconciliation(
    batch: Batch,
    *,
    check: str,
    report_sha256: str,
    gateway: str,
    date: str,
    summary: dict[str, Any],
    findings: dict[str, Any],
    occurred_at: str,
) -> Unit:
    stream_id = Reconciliation.create_id(check, gateway, date)
    existing = await batch.get(stream_id)
    if existing is not None:
        raise AlreadyRecorded(stream_id)
    recon = Reconciliation(
        check=check,
        report_sha256=report_sha256,
        gateway=gateway,
        date=date,
        summary=summary,
        findings=findings,
        occurred_at=occurred_at,
    )
    batch.remember(recon, 0)
    return unit_of([recon])
