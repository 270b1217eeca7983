"""Embedded servers for test sessions on machines without local ones (placeholder, see ledger.embedded)."""
