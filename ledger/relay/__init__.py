"""The committed log -> the JetStream stream, in position order, resumable, one
leader at a time."""
