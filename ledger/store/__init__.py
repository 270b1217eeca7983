"""PostgreSQL, and only PostgreSQL: the schema, the group-committed append, the log,
idempotency keys, claims and the suspense list."""
