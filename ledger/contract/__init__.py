"""What the ledger publishes: the event message, its NATS subjects and the hash chain.

Readers outside the process (the stream's consumers, auditors with an export)
rely on exactly this; nothing here does I/O.
"""
