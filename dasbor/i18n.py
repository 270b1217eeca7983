"""The pages' words in Bahasa Indonesia and English, rupiah, and the local day.

Bahasa Indonesia is the default: English only when the user chose it (the
``lang`` cookie) or the browser puts English before Indonesian in
``Accept-Language``. Money comes from the read models as decimal strings
(``"1500000.00"``); it is shown with Indonesian grouping (``Rp 1.500.000``)
in both languages, because it is rupiah either way.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Final

from ledger.domain.errors import ValidationError

__all__ = [
    "LANGUAGES",
    "STATUS_WORDS",
    "choose_language",
    "days_back",
    "local_time",
    "local_today",
    "money",
    "parse_rupiah",
    "translate",
]

LANGUAGES: Final = ("id", "en")
#: ``Accept-Language`` entries read at most (a header is the client's to make long)
_ACCEPT_ENTRIES_MAX: Final = 20

_EN: Final[dict[str, str]] = {
    "Dasbor": "Dashboard",
    "Masuk": "Sign in",
    "Keluar": "Sign out",
    "Kunci API": "API key",
    "Masuk dengan kunci API yang diberikan inkubator.": (
        "Sign in with the API key the incubator gave you."
    ),
    "Kunci tidak dikenal.": "Unknown key.",
    "Kunci ini tidak punya halaman dasbor.": "This key has no dashboard pages.",
    "Sesi habis atau formulir kedaluwarsa; muat ulang halaman.": (
        "The session ended or the form expired; reload the page."
    ),
    "Anda tidak boleh membuka halaman ini.": "You may not open this page.",
    "Halaman tidak ditemukan.": "Page not found.",
    "Saldo": "Balance",
    "Tertunda": "Pending",
    "Tersedia": "Available",
    "Diterima": "Captured",
    "Dikembalikan": "Refunded",
    "Biaya": "Fees",
    "Dicairkan": "Paid out",
    "per posisi": "as of position",
    "peristiwa di belakang ledger": "events behind the ledger",
    "detik": "seconds",
    "Rekap harian 30 hari terakhir": "Daily recap, last 30 days",
    "Tanggal": "Date",
    "Kanal": "Channel",
    "Pesanan": "Orders",
    "Bruto": "Gross",
    "Pengembalian": "Refunds",
    "Bersih": "Net",
    "Unduh CSV": "Download CSV",
    "Belum ada transaksi.": "No transactions yet.",
    "Pesanan terbaru": "Recent orders",
    "Pencairan": "Payouts",
    "Catat pesanan": "Record an order",
    "Nomor pesanan": "Order number",
    "kosongkan untuk nomor otomatis": "leave empty for a number made for you",
    "Jumlah (Rp)": "Amount (Rp)",
    "Sudah dibayar tunai": "Already paid in cash",
    "Simpan": "Save",
    "Tandai lunas (tunai)": "Mark paid (cash)",
    "Batalkan": "Cancel",
    "Status": "Status",
    "Waktu": "Time",
    "Referensi": "Reference",
    "Jumlah": "Amount",
    "Tersimpan.": "Saved.",
    "Sudah tercatat sebelumnya.": "Already recorded.",
    "Rekap kota": "City recap",
    "Dari": "From",
    "Sampai": "To",
    "Tampilkan": "Show",
    "Penjual aktif": "Active sellers",
    "Bruto per kanal": "Gross by channel",
    "Bruto per kecamatan": "Gross by district",
    "Kecamatan": "District",
    "tanpa kecamatan": "no district",
    "Registri penjual": "Seller registry",
    "Semua": "All",
    "belum punya": "lacks",
    "Penjual": "Sellers",
    "Nama": "Name",
    "Terverifikasi": "Verified",
    "Menunggu": "Pending",
    "Ditolak": "Rejected",
    "Jumlah per kecamatan": "Counts per district",
    "Kurasi": "Curation",
    "Nomor sertifikat": "Certificate number",
    "Antrean suspense": "Suspense queue",
    "Selesaikan": "Resolve",
    "Tindakan": "Action",
    "Alasan": "Reason",
    "Tidak ada entri terbuka.": "No open entries.",
    "Keadaan ledger": "State of the ledger",
    "Posisi kepala": "Head position",
    "Ketertinggalan relay": "Relay lag",
    "Proyeksi": "Projections",
    "Posisi": "Position",
    "Ketertinggalan": "Lag",
    "Verifikasi terakhir": "Last verify",
    "belum pernah dicatat": "never recorded",
    "baik": "ok",
    "bermasalah": "problems found",
    "peristiwa": "events",
    "Penjual lain": "Other seller",
    "Lanjut": "Next",
    "Sebelumnya": "Previous",
    "Bahasa": "Language",
    "tunai": "cash",
    "Belum dibayar": "Open",
    "Berlaku sampai": "Valid until",
    "penjual di": "sellers in",
    "belum punya sertifikat": "lack a certificate of",
    "Dibayar sebagian": "Partly paid",
    "Lunas": "Paid",
    "Dibatalkan": "Cancelled",
}


#: the words shown for an order's status (``ledger.domain.orders.order_status``)
#: and a seller's curation status; the value is a key of the table above
STATUS_WORDS: Final[dict[str, str]] = {
    "open": "Belum dibayar",
    "partially_paid": "Dibayar sebagian",
    "paid": "Lunas",
    "refunded": "Dikembalikan",
    "cancelled": "Dibatalkan",
    "verified": "Terverifikasi",
    "pending": "Menunggu",
    "rejected": "Ditolak",
}


def translate(language: str, text: str) -> str:
    """``text`` (Bahasa Indonesia, the pages' own words) in ``language``."""
    if language == "en":
        return _EN.get(text, text)
    return text


def choose_language(cookie: str | None, accept_language: str | None) -> str:
    """The user's choice if any; else English only if the browser ranks it above Indonesian."""
    if cookie is not None and cookie in LANGUAGES:
        return cookie
    ranked: list[tuple[float, int, str]] = []
    for index, entry in enumerate((accept_language or "").split(",")[:_ACCEPT_ENTRIES_MAX]):
        tag, _, params = entry.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else "id"


def money(amount: str | int | Decimal | None, currency: str = "IDR") -> str:
    """``"1500000.00"`` -> ``Rp 1.500.000``; cents only when there are some (``Rp 10,50``)."""
    if amount is None:
        return "-"
    try:
        value = Decimal(amount)
    except (InvalidOperation, ValueError):
        return str(amount)
    sign = "-" if value < 0 else ""
    value = abs(value)
    whole = int(value)
    grouped = f"{whole:,}".replace(",", ".")
    cents = value - whole
    if cents:
        grouped += "," + f"{cents:.2f}"[2:]
    symbol = "Rp" if currency == "IDR" else currency
    return f"{sign}{symbol} {grouped}"


#: what a seller may type as an amount: ``150000``, ``150.000``, ``Rp 150.000,50``
_AMOUNT: Final = re.compile(r"\A(?:Rp\.?\s*)?(\d{1,3}(?:\.\d{3})+|\d+)(?:,(\d{1,2}))?\Z", re.I)


def parse_rupiah(text: str) -> str:
    """An amount as typed in Indonesia, as the canonical decimal string (``"150000.50"``).

    A dot groups thousands and a comma starts the sen, the other way round from
    the API's JSON; the canonical parser then applies every rule of an amount.
    """
    found = _AMOUNT.match(text.strip())
    if found is None:
        raise ValidationError("amount must be rupiah like 150000 or 150.000", field="amount")
    whole = found.group(1).replace(".", "")
    return f"{whole}.{(found.group(2) or '0').ljust(2, '0')}"


def local_time(value: datetime | str | None, zone: tzinfo) -> str:
    """A moment as the city reads it: ``05/12/2026 02:46`` (Makassar time, day first)."""
    if value is None or value == "":
        return "-"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    else:
        moment = value
    if moment.tzinfo is not None:
        moment = moment.astimezone(zone)
    return moment.strftime("%d/%m/%Y %H:%M")


def local_today(zone: tzinfo, now: datetime | None = None) -> date:
    """Today's date where the city is (the recaps' day), not the server's or UTC's."""
    return (now or datetime.now(zone)).astimezone(zone).date()


def days_back(last: date, count: int) -> list[date]:
    """``count`` days ending with ``last``, oldest first."""
    return [last - timedelta(days=count - 1 - i) for i in range(count)]
