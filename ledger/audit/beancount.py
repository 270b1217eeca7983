"""The log as a beancount ledger: ``omniledger export --format beancount``.

What lives here: :func:`write_beancount`, a pure writer from recorded
messages (``ledger/contract/messages.py``) to beancount text; no SQL, no HTTP.
``bean-check`` on the output must pass for any consistent log.

Chart of accounts (the books of the ledger's operator, who collects through
gateways and owes each seller their money; amounts in the event's currency)::

    Assets:Gateways:<Gateway>            money held by a gateway for us (gross
                                         captures, less its fee, less refunds)
    Assets:Bank:Payouts                  the bank account payouts leave from;
                                         goes negative by what was paid out,
                                         because gateway settlements into the
                                         bank are not events of the log
    Assets:Suspense:<Gateway>            gateway money the ledger could not
                                         apply yet (suspense.recorded), until
                                         suspense.resolved
    Liabilities:Sellers:<Seller>         what the ledger owes the seller: its
                                         ``available`` balance, as a credit
    Liabilities:Suspense                 the other side of Assets:Suspense
    Expenses:Fees:Gateways:<Gateway>     the fee (MDR) the gateway withheld
    Income:Fees:Sellers                  the same fee charged on to the seller

Postings per event (G = gateway, S = seller, A = amount, F = fee)::

    payment.captured   Assets:Gateways:G            A - F
                       Expenses:Fees:Gateways:G         F
                       Liabilities:Sellers:S       -A
                       Liabilities:Sellers:S            F
                       Income:Fees:Sellers             -F
    refund.issued      Liabilities:Sellers:S        A      (the fee is not returned)
                       Assets:Gateways:G           -A
    payout.sent        Liabilities:Sellers:S        A
                       Assets:Bank:Payouts         -A
    suspense.recorded  Assets:Suspense:G            A      (negated for a refund)
                       Liabilities:Suspense        -A
    suspense.resolved  the reverse of its suspense.recorded; the event that was
                       applied is in the log on its own and books the money

so ``-balance(Liabilities:Sellers:S)`` is the seller's ``available`` balance of
CONTRACT section 4 (captured - refunded - fees - paid out), and the fee nets to
zero for the operator. Other events (orders, status notes, failed payments,
sellers, reconciliations) move no money: each becomes a one-line comment
with its position, so every position of the log is accounted for in the file.

Account names: seller ids (``[A-Za-z0-9._:-]{1,64}``) are not all valid
beancount components, so ``.``, ``_`` and ``:`` become ``-``, the first letter
is capitalised, a leading symbol gets an ``X`` before it, and an 8-hex-digit
SHA-256 prefix of the raw id is always appended (``shop.a`` ->
``Shop-a-<hash>``): deterministic, and distinct ids cannot meet in one name
unless both their cleaned spellings and 32 bits of hash coincide. The raw
id is kept in each transaction's ``seller_id`` metadata.

Dates: a transaction is dated by the local calendar day of its
``occurred_at`` in the deployment's time zone (default ``Asia/Makassar``), so
``2026-11-30T17:30:00Z`` is booked on 2026-12-01, like the daily recaps.

Balance assertions: one per seller (and currency) for each local day on
which the seller's balance moved, dated the *next* day, because beancount
checks a ``balance`` at the start of its date. The log is in recording order,
not in ``occurred_at`` order: a late gateway retry, a resent webhook or a
suspense resolved weeks later lands an event on a day long past. An
assertion written while streaming could then be contradicted by a later
line, and nothing in the log bounds how late an event may be. So
transactions are streamed out as they come, while the writer keeps, per
seller and currency, the net change per local day; the assertions are written
at the end of the file, from the complete history (beancount does not care
where in the file a directive stands). Memory is therefore one integer per
(seller, currency, active day), not per event. Accounts are opened on first
use with a fixed date (:data:`OPEN_DATE`) so that a late event dated before
the account's first use is still inside its lifetime.

An export of a window of the log (``--after N``) lacks the opening balances;
pass ``assert_balances=False`` for it.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any, Final, TextIO
from zoneinfo import ZoneInfo

from ledger.domain import balances
from ledger.domain.errors import ValidationError
from ledger.domain.money import format_minor, parse_amount, parse_currency

__all__ = ["OPEN_DATE", "gateway_account", "seller_account", "write_beancount"]

#: The date every account is opened on: before any event the ledger can hold.
#: Before the first local day any accepted event can fall on: timestamps start at
#: 2000-01-01T00:00Z, which is 1999-12-31 in zones west of UTC.
OPEN_DATE: Final[date] = date(1999, 12, 30)

GATEWAYS_ROOT: Final[str] = "Assets:Gateways"
BANK_PAYOUTS: Final[str] = "Assets:Bank:Payouts"
SUSPENSE_ROOT: Final[str] = "Assets:Suspense"
SELLERS_ROOT: Final[str] = "Liabilities:Sellers"
SUSPENSE_LIABILITY: Final[str] = "Liabilities:Suspense"
FEE_EXPENSES_ROOT: Final[str] = "Expenses:Fees:Gateways"
FEE_INCOME: Final[str] = "Income:Fees:Sellers"

_NOT_COMPONENT: Final = re.compile(r"[^A-Za-z0-9-]")
_METADATA_UNSAFE: Final = re.compile(r'[\\"\x00-\x1f\x7f]')
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n"}


def _component(raw: str) -> str:
    cleaned = _NOT_COMPONENT.sub("-", raw)
    if not cleaned[:1].isalnum():
        cleaned = "X" + cleaned
    return cleaned[0].upper() + cleaned[1:]


def seller_account(seller_id: str) -> str:
    """``Liabilities:Sellers:<cleaned id>-<8 hex of SHA-256(id)>``."""
    suffix = hashlib.sha256(seller_id.encode()).hexdigest()[:8]
    return f"{SELLERS_ROOT}:{_component(seller_id)}-{suffix}"


def gateway_account(root: str, gateway: str) -> str:
    """``<root>:<Gateway>``: gateway names are our own few constants, cleaned without a hash."""
    return f"{root}:{_component(gateway)}"


def _quote(value: object) -> str:
    """A beancount string literal; other control characters than newline become spaces."""
    text = _METADATA_UNSAFE.sub(lambda m: _ESCAPES.get(m.group(), " "), str(value))
    return f'"{text}"'


class _Writer:
    def __init__(self, out: TextIO, zone: ZoneInfo) -> None:
        self.out = out
        self.zone = zone
        self.opened: set[str] = set()
        # (account, currency) -> local day -> net change in minor units
        self.daily: defaultdict[tuple[str, str], defaultdict[date, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        # suspense_id -> (gateway, amount_minor, currency) of the open suspense items
        self.suspense: dict[str, tuple[str, int, str]] = {}

    # -- helpers ---------------------------------------------------------------

    def day_of(self, message: dict[str, Any]) -> date:
        raw = message.get("occurred_at")
        try:
            moment = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ValidationError(
                f"position {message.get('position')}: occurred_at {raw!r} is not RFC 3339 "
                "with an offset",
                field="occurred_at",
            )
        day = moment.astimezone(self.zone).date()
        if day <= OPEN_DATE:
            raise ValidationError(
                f"position {message.get('position')}: occurred_at {raw!r} is before "
                f"{OPEN_DATE}, the date the export opens its accounts on",
                field="occurred_at",
            )
        return day

    def open(self, account: str) -> str:
        if account not in self.opened:
            self.opened.add(account)
            self.out.write(f"{OPEN_DATE.isoformat()} open {account}\n")
        return account

    def transaction(
        self,
        day: date,
        payee: str,
        narration: str,
        metadata: dict[str, object],
        postings: list[tuple[str, int]],
        currency: str,
    ) -> None:
        assert sum(minor for _, minor in postings) == 0, postings
        for account, _ in postings:
            self.open(account)
        lines = [f"{day.isoformat()} * {_quote(payee)} {_quote(narration)}"]
        for key, value in metadata.items():
            if value is None:
                continue
            shown = str(value) if isinstance(value, int) else _quote(value)
            lines.append(f"  {key}: {shown}")
        for account, minor in postings:
            lines.append(f"  {account}  {format_minor(minor, currency)} {currency}")
            if account.startswith(SELLERS_ROOT + ":"):
                self.daily[account, currency][day] += minor
        self.out.write("\n".join(lines) + "\n\n")

    # -- events ----------------------------------------------------------------

    def write(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        data = message.get("data")
        position = message.get("position")
        if not isinstance(data, dict):
            data = {}
        handler = _HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            subject = " ".join(
                str(data[name])
                for name in ("seller_id", "channel", "order_id", "amount", "currency", "status")
                if data.get(name) is not None
            )
            self.out.write(_CONTROL.sub(" ", f"; {position} {kind} {subject}").rstrip() + "\n")
            return
        try:
            handler(self, message, data)
        except (KeyError, ValidationError) as e:
            raise ValidationError(
                f"position {position}: {kind} cannot be exported: {e}", field="data"
            ) from e

    def captured(self, message: dict[str, Any], data: dict[str, Any]) -> None:
        currency = parse_currency(data.get("currency"))
        amount = parse_amount(data["amount"], currency)
        fee = parse_amount(data.get("fee") or "0", currency, field="fee", allow_zero=True)
        change = balances.effect(balances.CAPTURED, amount_minor=amount, fee_minor=fee)
        gateway = str(data["gateway"])
        seller = seller_account(str(data["seller_id"]))
        # the seller is credited the capture and charged its fee: together
        # ``available``'s change under the money rule
        postings = [(gateway_account(GATEWAYS_ROOT, gateway), amount - fee)]
        if fee:
            postings.append((gateway_account(FEE_EXPENSES_ROOT, gateway), fee))
        postings.append((seller, -change.captured_minor))
        if fee:
            postings += [(seller, change.fees_minor), (FEE_INCOME, -fee)]
        self.transaction(
            self.day_of(message),
            gateway,
            f"payment.captured {data.get('channel')}:{data.get('order_id')}",
            _metadata(message, data, "seller_id", "order_id", "channel", "gateway_ref"),
            postings,
            currency,
        )

    def refunded(self, message: dict[str, Any], data: dict[str, Any]) -> None:
        currency = parse_currency(data.get("currency"))
        amount = parse_amount(data["amount"], currency)
        change = balances.effect(balances.REFUNDED, amount_minor=amount)
        gateway = str(data["gateway"])
        self.transaction(
            self.day_of(message),
            gateway,
            f"refund.issued {data.get('channel')}:{data.get('order_id')}",
            _metadata(message, data, "seller_id", "order_id", "channel", "gateway_ref"),
            [
                (seller_account(str(data["seller_id"])), -change.available_minor),
                (gateway_account(GATEWAYS_ROOT, gateway), -amount),
            ],
            currency,
        )

    def paid_out(self, message: dict[str, Any], data: dict[str, Any]) -> None:
        currency = parse_currency(data.get("currency"))
        amount = parse_amount(data["amount"], currency)
        change = balances.effect(balances.PAID_OUT, amount_minor=amount)
        self.transaction(
            self.day_of(message),
            str(data["seller_id"]),
            "payout.sent",
            _metadata(message, data, "seller_id", "reference"),
            [
                (seller_account(str(data["seller_id"])), -change.available_minor),
                (BANK_PAYOUTS, -amount),
            ],
            currency,
        )

    def suspended(self, message: dict[str, Any], data: dict[str, Any]) -> None:
        currency = parse_currency(data.get("currency"))
        # zero for a fact without money (a status of an unknown order): a
        # zero transaction keeps the entry's history in the file all the same
        amount = parse_amount(data["amount"], currency, allow_zero=True)
        event = data.get("event")
        if isinstance(event, dict) and event.get("type") == "refund.issued":
            amount = -amount  # money that left the gateway
        gateway = str(data["gateway"])
        self.suspense[str(data["suspense_id"])] = (gateway, amount, currency)
        self.transaction(
            self.day_of(message),
            gateway,
            f"suspense.recorded {data.get('reason')}",
            _metadata(message, data, "suspense_id"),
            [(gateway_account(SUSPENSE_ROOT, gateway), amount), (SUSPENSE_LIABILITY, -amount)],
            currency,
        )

    def resolved(self, message: dict[str, Any], data: dict[str, Any]) -> None:
        suspense_id = str(data["suspense_id"])
        recorded = self.suspense.pop(suspense_id, None)
        if recorded is None:
            # recorded before this export's window: nothing of it was booked here
            self.out.write(
                f"; {message.get('position')} suspense.resolved {suspense_id} "
                "(recorded before this export)\n"
            )
            return
        gateway, amount, currency = recorded
        self.transaction(
            self.day_of(message),
            gateway,
            f"suspense.resolved {data.get('channel')}:{data.get('order_id')}",
            _metadata(message, data, "suspense_id", "applied_position"),
            [(SUSPENSE_LIABILITY, amount), (gateway_account(SUSPENSE_ROOT, gateway), -amount)],
            currency,
        )

    def balances(self) -> None:
        if not self.daily:
            return
        self.out.write(
            "; Balance assertions: each seller's balance after each active local day\n\n"
        )
        for (account, currency), days in sorted(self.daily.items()):
            running = 0
            for day in sorted(days):
                running += days[day]
                amount = format_minor(running, currency)
                next_day = (day + timedelta(days=1)).isoformat()
                self.out.write(f"{next_day} balance {account}  {amount} {currency}\n")
            self.out.write("\n")


def _metadata(message: dict[str, Any], data: dict[str, Any], *names: str) -> dict[str, object]:
    shown: dict[str, object] = {"position": message.get("position")}
    for name in names:
        value = data.get("position" if name == "applied_position" else name)
        shown[name] = value
    shown["occurred_at"] = message.get("occurred_at")
    return shown


#: The money types that reach a seller's ``available`` (``ledger.domain.balances``;
#: orders and cancellations move only ``pending``, which is no account here),
#: and the suspense the operator holds for gateways.
_HANDLERS: Final = {
    balances.CAPTURED: _Writer.captured,
    balances.REFUNDED: _Writer.refunded,
    balances.PAID_OUT: _Writer.paid_out,
    "suspense.recorded": _Writer.suspended,
    "suspense.resolved": _Writer.resolved,
}


def write_beancount(
    messages: Iterable[dict[str, Any]],
    out: TextIO,
    *,
    timezone: str = "Asia/Makassar",
    assert_balances: bool = True,
) -> None:
    """Writes ``messages`` (in log order) to ``out`` as a beancount ledger.

    Transactions are streamed; the per-seller daily balance assertions follow
    at the end (see the module docstring for why). Raises
    :class:`ValidationError` naming the position of a money event whose data
    cannot be booked (a missing field, a malformed amount or time).
    """
    writer = _Writer(out, ZoneInfo(timezone))
    out.write(
        "; Omni-Ledger export: one transaction per money event, dated by the local day\n"
        f"; of occurred_at in {timezone}"
        + ("; balance assertions per seller at the end.\n" if assert_balances else ".\n")
        + 'option "title" "Omni-Ledger"\n'
        'option "operating_currency" "IDR"\n\n'
    )
    for message in messages:
        writer.write(message)
    if assert_balances:
        writer.balances()
