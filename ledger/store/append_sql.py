"""The append's write statement, in its two forms (used by ``ledger.store.append``).

``APPEND`` runs inside the commit's transaction, after the head lock and the
race checks: it writes a laid-out batch in one round trip (the events, their
keys, the sellers' running totals, the order and payment indexes, the claims,
the new head and the relay's wake-up; pg_notify is delivered at commit, never
for a rolled-back batch).

``APPEND_AT_HEAD`` is the same statement run on its own, as its own
transaction (one round trip instead of BEGIN, head lock, race check, write,
COMMIT): it takes the head lock itself and writes only if the head is still
where this process last left it and none of the race checks finds anything
(stream versions, keys, claims: the checks ``APPEND``'s caller makes under
the lock). Otherwise every part writes nothing and no row comes back, and
the caller commits the batch the long way. Why that is safe although the
statement's snapshot is taken before it waits for the lock: if the head has
not moved, no other transaction committed events since this process's last
commit, so the snapshot holds everything the checks must see.
"""

from __future__ import annotations

from typing import Final

from ledger.store.keys import claims_taken
from ledger.store.schema import EVENTS_TABLE

__all__ = ["APPEND", "APPEND_AT_HEAD"]

#: the parameters after APPEND's 36: the head position the batch was laid out
#: on, the streams' base versions, and the claims (``claim_columns``)
_GATE_SQL: Final = f"""
head AS (
    SELECT position FROM ledger_head FOR UPDATE
), stale AS (
    SELECT 1 FROM unnest($38::uuid[], $39::bigint[]) AS b(id, v)
    WHERE v <> coalesce(
        (SELECT max(originator_version) FROM {EVENTS_TABLE} WHERE originator_id = b.id), 0)
    UNION ALL SELECT 1 FROM idempotency_keys WHERE key = ANY($11::text[])
    UNION ALL SELECT 1 FROM ({claims_taken(40)}) c
), gate AS (
    SELECT (SELECT position FROM head) = $37 AND NOT EXISTS (SELECT 1 FROM stale) AS ok
),"""


def _append(gated: bool) -> str:
    gate = "WHERE (SELECT ok FROM gate)" if gated else ""
    return f"""
WITH {_GATE_SQL if gated else ""} events AS (
    INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state,
        notification_id, type, occurred_at, recorded_at, hash, prev_hash, seller_id)
    SELECT id, v, topic, state, $5::bigint + n, type, occurred_at, $8::timestamptz, hash,
        prev_hash, seller_id
    FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bytea[], $6::text[],
        $7::timestamptz[], $9::text[], $10::text[], $33::text[]) WITH ORDINALITY
        AS e(id, v, topic, state, type, occurred_at, hash, prev_hash, seller_id, n)
    {gate}
), keys AS (
    INSERT INTO idempotency_keys (key, fingerprint, position, stream_id, version)
    SELECT * FROM unnest($11::text[], $12::bytea[], $13::bigint[], $14::uuid[], $15::bigint[])
    {gate}
), accounts AS (
    INSERT INTO seller_accounts AS a (seller_id, currency, pending_minor, captured_minor,
        refunded_minor, fees_minor, paid_out_minor, position)
    SELECT s, c, p, cap, r, f, po, $30 FROM unnest($16::text[], $17::text[], $18::bigint[],
        $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[]) AS t(s, c, p, cap, r, f, po)
    {gate}
    ON CONFLICT (seller_id, currency) DO UPDATE SET
        pending_minor = a.pending_minor + excluded.pending_minor,
        captured_minor = a.captured_minor + excluded.captured_minor,
        refunded_minor = a.refunded_minor + excluded.refunded_minor,
        fees_minor = a.fees_minor + excluded.fees_minor,
        paid_out_minor = a.paid_out_minor + excluded.paid_out_minor,
        position = excluded.position
), orders AS (
    INSERT INTO order_index (channel, order_id, seller_id)
    SELECT * FROM unnest($23::text[], $24::text[], $25::text[]) {gate}
    ON CONFLICT DO NOTHING
), payments AS (
    INSERT INTO payment_index (gateway, gateway_ref, channel, order_id)
    SELECT * FROM unnest($26::text[], $27::text[], $28::text[], $29::text[]) {gate}
    ON CONFLICT DO NOTHING
), claims AS (
    -- no ON CONFLICT: every claim was re-checked under the head lock, so a
    -- conflict here is a bug, and it must fail the batch, not pass silently
    INSERT INTO fact_claims (kind, a, b)
    SELECT * FROM unnest($34::text[], $35::text[], $36::text[]) {gate}
)
UPDATE ledger_head SET position = $30, hash = $31 {gate}
RETURNING pg_notify($32, $30::text)
"""


APPEND: Final = _append(gated=False)
APPEND_AT_HEAD: Final = _append(gated=True)
