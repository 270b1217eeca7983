"""The system tests' per-test database, stream and data folder (``deployment``), reused."""

from tests.integration.system.conftest import deployment, fresh_db

__all__ = ["deployment", "fresh_db"]
