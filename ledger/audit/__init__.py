"""The auditors' side: the hash chain re-checked, balances replayed as of a time,
exports (JSON Lines, beancount) and reconciliation against settlement reports."""
