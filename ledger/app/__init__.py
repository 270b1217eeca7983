"""The write side: commands decided on the aggregates and appended with group commit."""
