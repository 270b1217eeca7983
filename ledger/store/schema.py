"""The schema: the events table, the head, the indexes and keys beside it, and its migrations.

The events table keeps the ``eventsourcing`` stored-event layout
(``originator_id, originator_version, topic, state, notification_id``) so the
library's own ``PostgresApplicationRecorder`` reads what we write; the extra
columns (type, times, hash chain) sit beside it. Migrations are numbered and
applied once each, under an advisory lock, by ``omniledger migrate`` (or at
start-up); read-only commands only ask which are missing.
"""

from __future__ import annotations

from typing import Final

import asyncpg

from ledger.contract.messages import GENESIS_HASH

__all__ = ["EVENTS_TABLE", "MIGRATIONS", "NOTIFY_CHANNEL", "Schema"]

#: The library names an application's table ``<name lowercased>_events``: an
#: ``eventsourcing`` Application called ``OmniLedger`` reads this one.
EVENTS_TABLE: Final = "omniledger_events"
NOTIFY_CHANNEL: Final = "omniledger_events"

#: The first statement of a migration that must rewrite the log once it is
#: append-only (migration 6): the superuser path, for that transaction only.
#: A database migrated before 6 has no trigger and needs no privilege.
_REWRITING_THE_LOG: Final = """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'omniledger_append_only') THEN
                PERFORM set_config('session_replication_role', 'replica', true);
            END IF;
        END $$;
"""

_DONE_REWRITING: Final = """
        DO $$
        BEGIN
            IF current_setting('session_replication_role') = 'replica' THEN
                PERFORM set_config('session_replication_role', 'origin', true);
            END IF;
        END $$;
"""

MIGRATIONS: Final[list[tuple[int, str, str]]] = [
    (
        1,
        "events, head, idempotency, write-side indexes",
        f"""
        CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
            originator_id uuid NOT NULL,
            originator_version bigint NOT NULL,
            topic text,
            state bytea,
            notification_id bigserial,
            type text NOT NULL,
            occurred_at timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL,
            hash text NOT NULL,
            prev_hash text NOT NULL,
            PRIMARY KEY (originator_id, originator_version)
        );
        CREATE UNIQUE INDEX IF NOT EXISTS {EVENTS_TABLE}_notification_id_idx
            ON {EVENTS_TABLE} (notification_id ASC);
        CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_recorded_at_idx
            ON {EVENTS_TABLE} (recorded_at);
        CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_occurred_at_idx
            ON {EVENTS_TABLE} (occurred_at);
        CREATE TABLE IF NOT EXISTS ledger_head (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            position bigint NOT NULL,
            hash text NOT NULL
        );
        INSERT INTO ledger_head (id, position, hash) VALUES (true, 0, '{GENESIS_HASH}')
            ON CONFLICT DO NOTHING;
        CREATE TABLE IF NOT EXISTS idempotency_keys (
            key text PRIMARY KEY,
            fingerprint bytea NOT NULL,
            position bigint NOT NULL,
            stream_id uuid NOT NULL,
            version bigint NOT NULL
        );
        CREATE TABLE IF NOT EXISTS seller_accounts (
            seller_id text NOT NULL,
            currency text NOT NULL,
            pending_minor bigint NOT NULL DEFAULT 0,
            captured_minor bigint NOT NULL DEFAULT 0,
            refunded_minor bigint NOT NULL DEFAULT 0,
            fees_minor bigint NOT NULL DEFAULT 0,
            paid_out_minor bigint NOT NULL DEFAULT 0,
            position bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (seller_id, currency)
        );
        CREATE TABLE IF NOT EXISTS order_index (
            channel text NOT NULL,
            order_id text NOT NULL,
            seller_id text NOT NULL,
            PRIMARY KEY (channel, order_id)
        );
        CREATE INDEX IF NOT EXISTS order_index_order_id_idx ON order_index (order_id);
        CREATE TABLE IF NOT EXISTS payment_index (
            gateway text NOT NULL,
            gateway_ref text NOT NULL,
            channel text NOT NULL,
            order_id text NOT NULL,
            PRIMARY KEY (gateway, gateway_ref)
        );
        CREATE TABLE IF NOT EXISTS seller_channel_accounts (
            channel text NOT NULL,
            account text NOT NULL,
            seller_id text NOT NULL,
            PRIMARY KEY (channel, account)
        );
        CREATE TABLE IF NOT EXISTS suspense_entries (
            id uuid PRIMARY KEY,
            gateway text NOT NULL,
            reason text NOT NULL,
            event jsonb NOT NULL,
            amount_minor bigint NOT NULL,
            currency text NOT NULL,
            position bigint NOT NULL,
            recorded_at timestamptz NOT NULL,
            resolved_position bigint
        );
        CREATE TABLE IF NOT EXISTS api_keys (
            key_sha256 bytea PRIMARY KEY,
            role text NOT NULL,
            seller_id text,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        2,
        "relay checkpoint",
        """
        CREATE TABLE IF NOT EXISTS relay_checkpoints (
            stream text PRIMARY KEY,
            position bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        3,
        "unique claims of refunds, payouts and one-payment-per-order gateways",
        f"""
        CREATE TABLE IF NOT EXISTS fact_claims (
            kind text NOT NULL,
            a text NOT NULL,
            b text NOT NULL,
            PRIMARY KEY (kind, a, b)
        );
        -- The claims of what was recorded before this table existed (the
        -- first of any duplicates recorded then keeps the claim). A row whose
        -- state is not JSON (altered behind the ledger's back: verify names
        -- it) must not stop the migration: then row by row, skipping it.
        CREATE OR REPLACE FUNCTION pg_temp.claims_of(type text, s jsonb)
            RETURNS TABLE (kind text, a text, b text) LANGUAGE sql AS $f$
            SELECT 'refund', s->>'gateway', s->>'gateway_ref' WHERE type = 'refund.issued'
            UNION ALL SELECT 'payout', '', s->>'reference' WHERE type = 'payout.sent'
            UNION ALL SELECT 'gateway_order', s->>'gateway', s->>'order_id'
                WHERE type = 'payment.captured' AND s->>'gateway' = 'midtrans'
        $f$;
        DO $$
        DECLARE r record;
        BEGIN
            INSERT INTO fact_claims (kind, a, b)
            SELECT c.* FROM {EVENTS_TABLE} e,
                pg_temp.claims_of(e.type, convert_from(e.state, 'UTF8')::jsonb) c
            WHERE e.type IN ('refund.issued', 'payout.sent', 'payment.captured')
                AND c.a IS NOT NULL AND c.b IS NOT NULL
            ORDER BY e.notification_id
            ON CONFLICT DO NOTHING;
        EXCEPTION WHEN others THEN
            FOR r IN SELECT type, state FROM {EVENTS_TABLE}
                WHERE type IN ('refund.issued', 'payout.sent', 'payment.captured')
                ORDER BY notification_id
            LOOP
                BEGIN
                    INSERT INTO fact_claims (kind, a, b)
                    SELECT c.* FROM pg_temp.claims_of(
                        r.type, convert_from(r.state, 'UTF8')::jsonb) c
                    WHERE c.a IS NOT NULL AND c.b IS NOT NULL
                    ON CONFLICT DO NOTHING;
                EXCEPTION WHEN others THEN
                    NULL;
                END;
            END LOOP;
        END $$;
        """,
    ),
    (
        4,
        "a gateway key bound to one gateway name",
        "ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS gateway text;",
    ),
    (
        5,
        "events by seller (time travel reads one seller's events, not the log)",
        # An index beside the library's layout, never part of the hash chain:
        # the state (hashed) keeps the seller, this column only finds the rows.
        # Backfilled from the state's top-level seller_id in one pass; a row
        # whose state is not JSON (altered behind the ledger's back: verify
        # names it) must not stop the migration, so then row by row.
        f"""
        ALTER TABLE {EVENTS_TABLE} ADD COLUMN IF NOT EXISTS seller_id text;
        {_REWRITING_THE_LOG}
        DO $$
        BEGIN
            UPDATE {EVENTS_TABLE}
                SET seller_id = convert_from(state, 'UTF8')::jsonb ->> 'seller_id'
                WHERE seller_id IS NULL;
        EXCEPTION WHEN others THEN
            DECLARE r record;
            BEGIN
                FOR r IN SELECT notification_id, state FROM {EVENTS_TABLE} LOOP
                    BEGIN
                        UPDATE {EVENTS_TABLE}
                            SET seller_id = convert_from(r.state, 'UTF8')::jsonb ->> 'seller_id'
                            WHERE notification_id = r.notification_id;
                    EXCEPTION WHEN others THEN
                        NULL;
                    END;
                END LOOP;
            END;
        END $$;
        CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_seller_idx
            ON {EVENTS_TABLE} (seller_id, notification_id) WHERE seller_id IS NOT NULL;
        ANALYZE {EVENTS_TABLE} (seller_id);
        {_DONE_REWRITING}
        """,
    ),
    (
        6,
        "the log is append-only: UPDATE, DELETE and TRUNCATE refused; the head only moves on",
        # Tampering was detected (verify) but not prevented. These triggers
        # refuse it for every role but a superuser who says so for one
        # transaction: SET LOCAL session_replication_role = replica (what a
        # migration that must rewrite the log does, _REWRITING_THE_LOG, and
        # what the auditors' tamper tests do). One trigger call per commit on
        # ledger_head; none on the events' INSERT path.
        f"""
        CREATE OR REPLACE FUNCTION omniledger_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $f$
        BEGIN
            IF TG_TABLE_NAME = 'ledger_head' AND TG_OP = 'UPDATE' THEN
                IF NEW.position >= OLD.position THEN  -- NEW exists only on UPDATE
                    RETURN NEW;
                END IF;
            END IF;
            RAISE EXCEPTION 'omniledger: % on % refused: the log is append-only',
                TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege',
                HINT = 'a superuser may SET LOCAL session_replication_role = replica';
        END $f$;
        DROP TRIGGER IF EXISTS omniledger_append_only ON {EVENTS_TABLE};
        CREATE TRIGGER omniledger_append_only BEFORE UPDATE OR DELETE ON {EVENTS_TABLE}
            FOR EACH ROW EXECUTE FUNCTION omniledger_append_only();
        DROP TRIGGER IF EXISTS omniledger_no_truncate ON {EVENTS_TABLE};
        CREATE TRIGGER omniledger_no_truncate BEFORE TRUNCATE ON {EVENTS_TABLE}
            FOR EACH STATEMENT EXECUTE FUNCTION omniledger_append_only();
        DROP TRIGGER IF EXISTS omniledger_append_only ON ledger_head;
        CREATE TRIGGER omniledger_append_only BEFORE UPDATE OR DELETE ON ledger_head
            FOR EACH ROW EXECUTE FUNCTION omniledger_append_only();
        DROP TRIGGER IF EXISTS omniledger_no_truncate ON ledger_head;
        CREATE TRIGGER omniledger_no_truncate BEFORE TRUNCATE ON ledger_head
            FOR EACH STATEMENT EXECUTE FUNCTION omniledger_append_only();
        """,
    ),
    (
        7,
        "the outcome of each `omniledger verify` of the live log",
        # Not events: a verification is about the log, not a fact of it, and
        # recording it in the chain would change what the next one checks.
        """
        CREATE TABLE IF NOT EXISTS verify_runs (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            ok boolean NOT NULL,
            events bigint NOT NULL,
            head_position bigint NOT NULL,
            problems jsonb NOT NULL DEFAULT '[]'
        );
        """,
    ),
]


class Schema:
    """The schema part of :class:`ledger.store.LedgerStore`."""

    _pool: asyncpg.Pool

    async def migrate(self) -> list[int]:
        """Applies the migrations not yet applied; safe to run from many processes at once."""
        applied: list[int] = []
        async with self._pool.acquire() as conn, conn.transaction():
            # One migrator at a time: a transaction-level advisory lock.
            await conn.execute("SELECT pg_advisory_xact_lock(7203011)")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version int PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in MIGRATIONS:
                if version in done:
                    continue
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
                applied.append(version)
        return applied

    async def missing_migrations(self) -> list[int]:
        """The migrations not applied yet, read without writing anything (for
        read-only commands and read-only roles)."""
        exists = await self._pool.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        done: set[int] = set()
        if exists:
            done = {
                r["version"]
                for r in await self._pool.fetch("SELECT version FROM schema_migrations")
            }
        return [version for version, _, _ in MIGRATIONS if version not in done]
