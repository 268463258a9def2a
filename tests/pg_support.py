"""A fresh, migrated database on the tests' embedded PostgreSQL, dropped afterwards."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from switchboard.orchestrator.db import migrate
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres


@contextmanager
def fresh_database(pg_server: EmbeddedPostgres, prefix: str = "test") -> Iterator[str]:
    """The URL of a new database ``<prefix>_<random>`` on ``pg_server``, migrated; dropped
    (connections forced off) on exit. It logs in as the superuser, the owner."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(pg_server.uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_conninfo(pg_server.uri, dbname=name)
        migrate(url)
        yield url
    finally:
        with psycopg.connect(pg_server.uri, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
