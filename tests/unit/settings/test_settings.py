"""The one settings object: each bad value is one clear ``SettingsError``, not a later traceback."""

from __future__ import annotations

import pytest

from ledger.ops.settings import Settings, SettingsError


def settings(**env: str) -> Settings:
    return Settings.from_env({f"OMNILEDGER_{k}": v for k, v in env.items()})


def test_the_defaults() -> None:
    s = settings()
    assert (s.database_url, s.nats_url, s.port, s.timezone, s.log_level) == (
        None, None, 8080, "Asia/Makassar", "INFO"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:notaport/x", "DATABASE_URL"),
        ("DATABASE_URL", "postgresql://h:70000/x", "DATABASE_URL"),
        ("DATABASE_URL", "mysql://h/x", "postgresql://"),
        ("DATABASE_URL", "postgresql://u@a:5432,b:99999/x", "DATABASE_URL"),
        ("DATABASE_URL", "postgresql://u@a:5432,/x", "DATABASE_URL"),
        ("DATABASE_URL", "mysql://u@a:5432,b:5433/x", "postgresql://"),
        ("READ_DATABASE_URL", "postgresql://h:70000/x", "READ_DATABASE_URL"),
        ("NATS_URL", "not a url:xx", "nats://"),
        ("NATS_URL", "nats://127.0.0.1:port", "NATS_URL"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL"),
        ("PORT", "http", "PORT"),
        ("PORT", "70000", "PORT"),
        ("TIMEZONE", "Mars/Olympus", "TIMEZONE"),
        ("HTTP_HEADER_TIMEOUT_S", "soon", "HTTP_HEADER_TIMEOUT_S"),
        ("HTTP_HEADER_TIMEOUT_S", "0", "HTTP_HEADER_TIMEOUT_S"),
        ("HTTP_BODY_TIMEOUT_S", "nan", "HTTP_BODY_TIMEOUT_S"),
        ("HTTP_KEEPALIVE_TIMEOUT_S", "-1", "HTTP_KEEPALIVE_TIMEOUT_S"),
        ("HTTP_CONNECTIONS_MAX", "0", "HTTP_CONNECTIONS_MAX"),
    ],
)
def test_a_bad_value_is_named(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        settings(**{name: value})


@pytest.mark.parametrize(
    ("name", "value", "attribute", "parsed"),
    [
        ("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test", "database_url",
         "postgresql://postgres@127.0.0.1:5432/test"),
        ("DATABASE_URL", "postgres:///omniledger?host=/tmp", "database_url",
         "postgres:///omniledger?host=/tmp"),
        # a primary and its standby: libpq's multi-host form (issue 15)
        ("DATABASE_URL", "postgresql://u:pw@127.0.0.1:5433,127.0.0.1:5434/db"
         "?target_session_attrs=read-write", "database_url", "postgresql://u:pw@127.0.0.1:5433,"
         "127.0.0.1:5434/db?target_session_attrs=read-write"),
        ("DATABASE_URL", "postgresql://u@[::1]:5432,db-b/x", "database_url",
         "postgresql://u@[::1]:5432,db-b/x"),
        ("READ_DATABASE_URL", "postgresql://u@standby:5432/x", "read_database_url",
         "postgresql://u@standby:5432/x"),
        ("NATS_URL", "nats://127.0.0.1:4222", "nats_url", "nats://127.0.0.1:4222"),
        ("NATS_URL", "tls://nats.example:4443", "nats_url", "tls://nats.example:4443"),
        ("LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ],
)  # fmt: skip
def test_good_values_pass(name: str, value: str, attribute: str, parsed: object) -> None:
    assert getattr(settings(**{name: value}), attribute) == parsed


def test_the_http_limits_have_defaults_and_take_fractions() -> None:
    s = settings()
    assert (
        s.http_header_timeout_s,
        s.http_body_timeout_s,
        s.http_keepalive_timeout_s,
        s.http_connections_max,
    ) == (10.0, 30.0, 75.0, 1000)
    s = settings(HTTP_HEADER_TIMEOUT_S="2.5", HTTP_CONNECTIONS_MAX="50")
    assert (s.http_header_timeout_s, s.http_connections_max) == (2.5, 50)


def test_districts_default_to_makassar_and_may_be_replaced_or_opened() -> None:
    from ledger.domain.districts import MAKASSAR_DISTRICTS

    assert Settings.from_env({}).districts == MAKASSAR_DISTRICTS
    assert len(MAKASSAR_DISTRICTS) == 15
    assert Settings.from_env({"OMNILEDGER_DISTRICTS": " Gowa , Maros,,Gowa"}).districts == (
        "Gowa",
        "Maros",
    )
    assert Settings.from_env({"OMNILEDGER_DISTRICTS": "*"}).districts == ()


def test_asyncpg_pool_warnings_keep_their_reason_and_lose_the_traceback() -> None:
    """asyncpg's pool warned with a full traceback on every failed reconnect."""
    import logging
    import sys

    from ledger.ops.cli import _without_traceback

    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("asyncpg.pool", logging.WARNING, "pool.py", 1,
                               "Failed to restore the pool connection floor; %s", ("retrying",),
                               exc_info)  # fmt: skip
    assert _without_traceback(record)
    assert record.exc_info is None
    assert record.getMessage() == (
        "Failed to restore the pool connection floor; retrying"
        " (ConnectionRefusedError: [Errno 111] Connection refused)"
    )
    error = logging.LogRecord("asyncpg.pool", logging.ERROR, "pool.py", 1, "bug", (), exc_info)
    assert _without_traceback(error) and error.exc_info is not None  # errors keep theirs


def test_a_nats_cluster_is_a_comma_separated_list_and_each_url_is_checked() -> None:
    s = settings(NATS_URL=" nats://10.0.0.1:4222, nats://10.0.0.2:4222 ,,nats://10.0.0.3")
    assert s.nats_url == "nats://10.0.0.1:4222,nats://10.0.0.2:4222,nats://10.0.0.3"
    with pytest.raises(SettingsError, match="NATS_URL"):
        settings(NATS_URL="nats://10.0.0.1:4222,nats://10.0.0.2:port")
    with pytest.raises(SettingsError, match="nats://"):
        settings(NATS_URL="nats://10.0.0.1:4222,http://10.0.0.2:4222")
    with pytest.raises(SettingsError, match="names no server"):
        settings(NATS_URL=" , ")


def test_the_stream_has_three_replicas_on_a_cluster_and_one_on_one_server() -> None:
    """CONTRACT section 6: several URLs -> 3 replicas unless STREAM_REPLICAS says
    otherwise; one server -> 1."""
    cluster = "nats://a:4222,nats://b:4222,nats://c:4222"
    assert settings(NATS_URL=cluster).stream_replicas == 3
    assert settings(NATS_URL=cluster, STREAM_REPLICAS="1").stream_replicas == 1
    assert settings(NATS_URL="nats://a:4222").stream_replicas == 1
    assert settings(NATS_URL="nats://a:4222,nats://a:4222").stream_replicas == 1
    assert settings().stream_replicas == 1
