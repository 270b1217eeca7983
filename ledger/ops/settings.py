"""One frozen ``Settings``, read once from the environment (``OMNILEDGER_*``) at the root.

Nothing reads ``os.environ`` anywhere else. A bad value fails fast and names
the variable. Tests build ``Settings`` directly.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.contract.servers import nats_servers
from ledger.domain.districts import MAKASSAR_DISTRICTS

__all__ = ["Settings", "SettingsError"]


class SettingsError(ValueError):
    """An ``OMNILEDGER_*`` variable holds something we cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    #: PostgreSQL; ``None`` means "start the embedded one under data_dir" (``up`` only)
    database_url: str | None = None
    #: PostgreSQL for the read endpoints and the auditors' commands (a streaming
    #: standby); ``None``: they read ``database_url``, like the writes
    read_database_url: str | None = None
    #: NATS with JetStream, one URL or a cluster's separated by commas; ``None``
    #: means "start the embedded one under data_dir" (``up`` only)
    nats_url: str | None = None
    data_dir: Path = Path(".omniledger")
    host: str = "127.0.0.1"
    port: int = 8080
    timezone: str = "Asia/Makassar"
    admin_key: str | None = None
    midtrans_server_key: str | None = None
    #: Midtrans' API host, asked (GET /v2/{order_id}/status) before a notification
    #: moves money; the sandbox is https://api.sandbox.midtrans.com
    midtrans_api_url: str = "https://api.midtrans.com"
    #: the whole status call, connect to last byte; Midtrans waits 15 s for our answer
    midtrans_api_timeout_ms: int = 5000
    xendit_callback_token: str | None = None
    shopee_partner_key: str | None = None
    shopee_callback_url: str | None = None
    stream_name: str = "LEDGER"
    subject_prefix: str = "ledger"
    stream_max_age_s: int = 0  # 0: keep forever
    stream_max_bytes: int = -1  # -1: unlimited
    #: from the environment: 3 when NATS_URL names several servers, else 1 (CONTRACT 6)
    stream_replicas: int = 1
    stream_duplicate_window_s: int = 300
    batch_size_max: int = 2000
    #: how long a projection or the relay waits after a short batch for more
    projection_linger_ms: int = 50
    #: the read models this process's ``project`` runs (None: all of them)
    projection_models: tuple[str, ...] | None = None
    relay_linger_ms: int = 10
    db_pool_size_max: int = 10
    #: time-travel balance reads (``?as_of=``) in flight per API process; past
    #: it, and past one per seller, they are answered 429 (they replay the log)
    as_of_reads_max: int = 2
    #: ... and the share of the wall clock they may take together, in percent
    as_of_time_share_pct: int = 25
    #: HTTP connection limits (a client that holds a socket without finishing a
    #: request costs a file descriptor; past the cap they would starve the rest).
    #: A request line and headers must arrive within this of the connection
    #: opening or of the request's first byte.
    http_header_timeout_s: float = 10.0
    #: A request body must arrive whole within this of its headers (else 408).
    http_body_timeout_s: float = 30.0
    #: An idle keep-alive connection is closed after this; longer than the
    #: usual client pool's idle time, so a client rarely reuses a closing socket.
    http_keepalive_timeout_s: float = 75.0
    #: Open connections at most; past it the longest-idle one is closed for the
    #: new one, or, with none idle, the new one is answered 503 and closed.
    http_connections_max: int = 1000
    #: past this many events behind the log, the relay or a read model makes
    #: /healthz say "degraded" (ledger.api.health.HEALTH_LAG_EVENTS_MAX)
    health_lag_events_max: int = 10_000
    #: the districts a seller may be registered in (the city recap's); empty:
    #: any district is taken as given
    districts: tuple[str, ...] = MAKASSAR_DISTRICTS
    #: how long a dasbor sign-in lasts (the session cookie's and its row's life)
    dasbor_session_ttl_s: int = 8 * 3600
    log_level: str = "INFO"
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        var = _Variables(os.environ if env is None else env)
        text, number, seconds = var.text, var.number, var.seconds
        timezone = _timezone(text("TIMEZONE") or "Asia/Makassar")
        stream = _stream(text("STREAM") or "LEDGER")
        log_level = _log_level(text("LOG_LEVEL") or "INFO")
        nats_url = _nats_url(text("NATS_URL"))
        # a cluster keeps the stream on three of its servers: one may die
        replicas = 3 if nats_url is not None and len(nats_servers(nats_url)) > 1 else 1
        return cls(
            database_url=_pg_url("DATABASE_URL", text("DATABASE_URL")),
            read_database_url=_pg_url("READ_DATABASE_URL", text("READ_DATABASE_URL")),
            nats_url=nats_url,
            data_dir=Path(text("DATA_DIR") or ".omniledger"),
            host=text("HOST") or "127.0.0.1",
            port=number("PORT", 8080, low=0, high=65535),
            timezone=timezone,
            admin_key=text("ADMIN_KEY"),
            midtrans_server_key=text("MIDTRANS_SERVER_KEY"),
            midtrans_api_url=_api_url("MIDTRANS_API_URL", text("MIDTRANS_API_URL"))
            or "https://api.midtrans.com",
            midtrans_api_timeout_ms=number("MIDTRANS_API_TIMEOUT_MS", 5000, low=100, high=10_000),
            xendit_callback_token=text("XENDIT_CALLBACK_TOKEN"),
            shopee_partner_key=text("SHOPEE_PARTNER_KEY"),
            shopee_callback_url=text("SHOPEE_CALLBACK_URL"),
            stream_name=stream,
            subject_prefix=text("SUBJECT_PREFIX") or "ledger",
            stream_max_age_s=number("STREAM_MAX_AGE_S", 0, low=0, high=10 * 365 * 86400),
            stream_max_bytes=number("STREAM_MAX_BYTES", -1, low=-1, high=2**62),
            stream_replicas=number("STREAM_REPLICAS", replicas, low=1, high=5),
            stream_duplicate_window_s=number("STREAM_DUPLICATE_WINDOW_S", 300, low=120, high=86400),
            batch_size_max=number("BATCH_SIZE_MAX", 2000, low=1, high=100_000),
            projection_linger_ms=number("PROJECTION_LINGER_MS", 50, low=0, high=1000),
            projection_models=_models(text("PROJECTIONS")),
            relay_linger_ms=number("RELAY_LINGER_MS", 10, low=0, high=1000),
            db_pool_size_max=number("DB_POOL_SIZE_MAX", 10, low=2, high=200),
            as_of_reads_max=number("AS_OF_READS_MAX", 2, low=1, high=64),
            as_of_time_share_pct=number("AS_OF_TIME_SHARE_PCT", 25, low=1, high=100),
            http_header_timeout_s=seconds("HTTP_HEADER_TIMEOUT_S", 10.0, low=0.1, high=600),
            http_body_timeout_s=seconds("HTTP_BODY_TIMEOUT_S", 30.0, low=0.1, high=3600),
            http_keepalive_timeout_s=seconds("HTTP_KEEPALIVE_TIMEOUT_S", 75.0, low=0.1, high=3600),
            http_connections_max=number("HTTP_CONNECTIONS_MAX", 1000, low=1, high=1_000_000),
            districts=_districts(text("DISTRICTS")),
            health_lag_events_max=number("HEALTH_LAG_EVENTS_MAX", 10_000, low=1, high=2**62),
            dasbor_session_ttl_s=number("DASBOR_SESSION_TTL_S", 8 * 3600, low=60, high=30 * 86400),
            log_level=log_level,
        )


_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


class _Variables:
    """Reads ``OMNILEDGER_<name>`` from one mapping; an empty value counts as unset."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str | None:
        value = self._env.get(f"OMNILEDGER_{name}")
        return value if value not in (None, "") else None

    def number(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"OMNILEDGER_{name} must be an integer, not {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"OMNILEDGER_{name} must be between {low} and {high}")
        return value

    def seconds(self, name: str, default: float, *, low: float, high: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(
                f"OMNILEDGER_{name} must be a number of seconds, not {raw[:40]!r}"
            ) from None
        if not low <= value <= high:  # also refuses nan
            raise SettingsError(f"OMNILEDGER_{name} must be between {low} and {high}")
        return value


def _districts(raw: str | None) -> tuple[str, ...]:
    """``OMNILEDGER_DISTRICTS``: unset, Makassar's; ``*``, any; else a comma-separated list."""
    if raw is None or not raw.strip():
        return MAKASSAR_DISTRICTS
    if raw.strip() == "*":
        return ()
    names = tuple(dict.fromkeys(" ".join(n.split()) for n in raw.split(",") if n.strip()))
    if any(len(n) > 64 for n in names):
        raise SettingsError("OMNILEDGER_DISTRICTS: a district name is longer than 64 characters")
    return names


def _timezone(timezone: str) -> str:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"OMNILEDGER_TIMEZONE: unknown time zone {timezone!r}") from None
    return timezone


def _stream(stream: str) -> str:
    if not stream.replace("_", "").replace("-", "").isalnum():
        raise SettingsError("OMNILEDGER_STREAM must be letters, digits, _ or -")
    return stream


def _log_level(raw: str) -> str:
    log_level = raw.upper()
    if log_level not in _LOG_LEVELS:
        raise SettingsError(
            f"OMNILEDGER_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, not {log_level!r}"
        )
    return log_level


def _url(name: str, raw: str | None, schemes: tuple[str, ...]) -> str | None:
    """A server URL with one of ``schemes`` and, if it names a port, a valid one."""
    if raw is None:
        return None
    try:
        parts = urllib.parse.urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on "host:notaport" or a port past 65535
    except ValueError as e:
        raise SettingsError(f"OMNILEDGER_{name}: {e}") from None
    if parts.scheme not in schemes:
        raise SettingsError(
            f"OMNILEDGER_{name} must start with {' or '.join(s + '://' for s in schemes)}"
        )
    return raw


def _pg_url(name: str, raw: str | None) -> str | None:
    """A PostgreSQL URL naming one host or several: libpq's multi-host form
    (``postgresql://u@h1:5432,h2:5432/db?target_session_attrs=read-write``),
    which asyncpg takes too, so that a promoted standby is found. Every port
    given must be a valid one."""
    if raw is None:
        return None
    user, at, hosts = urllib.parse.urlsplit(raw).netloc.rpartition("@")
    if "," not in hosts:
        return _url(name, raw, ("postgresql", "postgres"))
    for host in hosts.split(","):
        if not host or host.startswith(":"):
            raise SettingsError(f"OMNILEDGER_{name}: a host without a name in {hosts!r}")
        # "[::1]:5432", "h:5432", "h": urlsplit checks one host at a time
        _url(name, f"postgresql://{user}{at}{host}/", ("postgresql",))
    # the scheme, checked on the URL with its host list cut to one host
    _url(name, raw.replace(hosts, "h", 1), ("postgresql", "postgres"))
    return raw


def _nats_url(raw: str | None) -> str | None:
    """One NATS URL or several separated by commas, each checked; kept without blanks."""
    if raw is None:
        return None
    servers = nats_servers(raw)
    if not servers:
        raise SettingsError("OMNILEDGER_NATS_URL names no server")
    for server in servers:
        _url("NATS_URL", server, ("nats", "tls"))
    return ",".join(servers)


def _api_url(name: str, raw: str | None) -> str | None:
    """An HTTPS base URL without a trailing slash; plain HTTP only to this machine.

    The server key travels in every request's Basic auth header: it must not
    cross a network in clear text.
    """
    url = _url(name, raw, ("https", "http"))
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        raise SettingsError(f"OMNILEDGER_{name} names no host")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SettingsError(f"OMNILEDGER_{name} must be https:// (http:// only to this machine)")
    if parts.query or parts.fragment:
        raise SettingsError(f"OMNILEDGER_{name} must be a base URL, without ? or #")
    return url.rstrip("/")


def _models(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    known = ("balances", "recaps", "city", "registry", "orders")
    for name in names:
        if name not in known:
            raise SettingsError(
                f"OMNILEDGER_PROJECTIONS: unknown read model {name!r}; known: {', '.join(known)}"
            )
    return names or None
