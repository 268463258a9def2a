"""Shared fixtures.

Database: one embedded PostgreSQL server for the whole session (``pg_server``),
a fresh migrated database per test (``database_url``), and a pool and a store
on it (``database``, ``store``). All sync: pytest-trio runs them as usual.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_support import fresh_database

from switchboard.orchestrator.db import Database
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres, start_embedded
from switchboard.orchestrator.store import Store

# -- database ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """One embedded PostgreSQL server for the test session, in a temporary folder."""
    data_dir = Path(tempfile.mkdtemp(prefix="switchboard-test-pg-"))
    server = start_embedded(data_dir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def database_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh database ``test_<random>``, migrated, dropped after the test.

    The URL logs in as the superuser ``postgres`` (the owner, as in production).
    """
    with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A connection pool on the test database (connections run as switchboard_app)."""
    with Database(database_url) as db:
        yield db


@pytest.fixture
def store(database: Database) -> Store:
    """A :class:`Store` on the test database."""
    return Store(database)
