"""The versioned schema: ``schema.sql`` as version 1, then numbered migrations.

Versions:

* 1, ``baseline``: ``schema.sql`` at the repository root, as the releases
  before versioned migrations applied it at every start. It is idempotent, so
  applying it to a database those releases made keeps every row.
* 2 and up: ``orchestrator/migrations/NNNN_<name>.sql`` (package data), where
  ``NNNN`` is the version. Neither ``schema.sql`` nor an applied file is ever
  edited again: a change to the schema is a new file.

:func:`migrate` applies what a database lacks, in order, each version in its own
transaction, and records it in ``schema_migrations`` (version, name, sha256 of
the file, applied_at). It refuses, naming the cause, a database that records a
version this code does not have (a newer release migrated it), an applied
version whose file has changed since, and a version missing below the
database's newest (a file added out of order). A database with the tables but
no ``schema_migrations`` was made by a release before versioned migrations: it
gets version 1 again (idempotent) and is recorded from there.

Errors: every failure is a :class:`~switchboard.orchestrator.errors.StorageError`
whose message names the version; a psycopg error is its ``__cause__``.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, final

import psycopg
from psycopg.rows import TupleRow

from .errors import StorageError

__all__ = [
    "AppliedMigration",
    "Migration",
    "SchemaStatus",
    "known_migrations",
    "migrate",
    "pg_message",
    "schema_sql",
    "schema_status",
]

MIGRATE_LOCK_KEY: Final = 0x5357_4254_4D49_4752  # "SWBTMIGR", an arbitrary constant
LOCK_TIMEOUT_MS: Final = 10_000
"""How long one migration waits for a table lock (a long transaction holding it
fails the migration instead of queueing every query of the fleet behind it)."""

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY CHECK (version >= 1),
    name        text NOT NULL,
    checksum    text NOT NULL CHECK (checksum ~ '^[0-9a-f]{64}$'),  -- sha256 hex of the file
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@final
@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: its number, name, SQL text and the text's sha256 (hex)."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        """``0002_session_owner``, the way the file is named."""
        return f"{self.version:04d}_{self.name}"


@final
@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of ``schema_migrations``."""

    version: int
    name: str
    checksum: str
    applied_at: datetime


@final
@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """What :func:`schema_status` found.

    Attributes:
        applied: the recorded versions, oldest first.
        pending: the versions :func:`migrate` would apply, in order.
        unversioned: the tables exist but ``schema_migrations`` does not (a
            database made before versioned migrations; version 1 is pending).
    """

    applied: tuple[AppliedMigration, ...]
    pending: tuple[Migration, ...]
    unversioned: bool


def schema_sql() -> str:
    """The text of ``schema.sql``: package data of ``switchboard``, else the repository's file."""
    try:
        return importlib.resources.files("switchboard").joinpath("schema.sql").read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        return (Path(__file__).resolve().parent.parent / "schema.sql").read_text("utf-8")


def known_migrations() -> tuple[Migration, ...]:
    """Every version this code has: ``schema.sql`` as 1, then ``orchestrator/migrations/``.

    Raises:
        StorageError: a file there is misnamed, or two files share a version.
    """
    found = [Migration(1, "baseline", schema_sql())]
    folder = importlib.resources.files("switchboard.orchestrator").joinpath("migrations")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None or int(match[1]) < 2:
            raise StorageError(
                f"migration file {entry.name!r}: name it NNNN_name.sql, NNNN >= 0002,"
                " the name in lower case, digits and _"
            )
        version = int(match[1])
        if version == found[-1].version:
            raise StorageError(f"two migration files have version {version}: {entry.name!r}")
        found.append(Migration(version, match[2], entry.read_text("utf-8")))
    return tuple(found)


def migrate(dsn: str, migrations: tuple[Migration, ...] | None = None) -> list[Migration]:
    """Bring the database at ``dsn`` to the newest version; safe to run at every start.

    Runs as the role ``dsn`` logs in as (the owner: a superuser, or a role with
    BYPASSRLS and CREATEROLE), holding a session-level advisory lock so that
    concurrent migrations of one database (a fleet starting) run one after the
    other; each version is one transaction with a lock timeout of
    :data:`LOCK_TIMEOUT_MS`.

    Args:
        dsn: libpq connection string or URI.
        migrations: the versions to know (tests); default :func:`known_migrations`.

    Returns:
        The versions applied now, in order (empty when the database was current).

    Raises:
        StorageError: the server is unreachable; the database has a version this
            code does not know, or an applied version whose file changed, or lacks
            a version below its newest; or a version failed (nothing of it stays).
    """
    known = known_migrations() if migrations is None else migrations
    applied_now: list[Migration] = []
    current: Migration | None = None
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            _check_owner(conn)
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATE_LOCK_KEY,))
            recorded = _recorded(conn) if _exists(conn, "schema_migrations") else {}
            for current in _pending(known, recorded):
                with conn.transaction():
                    conn.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                    conn.execute(current.sql.encode())
                    # After version 1, whose first statement checks the owner's rights.
                    conn.execute(_CREATE_TABLE)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum)"
                        " VALUES (%s, %s, %s)",
                        (current.version, current.name, current.checksum),
                    )
                applied_now.append(current)
            # The advisory lock ends with the session.
    except psycopg.Error as exc:
        where = f" at version {current.label}" if current is not None else ""
        raise StorageError(f"migration failed{where}: {pg_message(exc)}") from exc
    return applied_now


def schema_status(dsn: str, migrations: tuple[Migration, ...] | None = None) -> SchemaStatus:
    """What is applied to the database at ``dsn`` and what :func:`migrate` would apply.

    Changes nothing.

    Raises:
        StorageError: the server is unreachable, or the database is one
            :func:`migrate` would refuse (the message says why).
    """
    known = known_migrations() if migrations is None else migrations
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            versioned = _exists(conn, "schema_migrations")
            unversioned = not versioned and _exists(conn, "voice_sessions")
            recorded = _recorded(conn) if versioned else {}
    except psycopg.Error as exc:
        raise StorageError(f"cannot read the schema version: {pg_message(exc)}") from exc
    pending = _pending(known, recorded)
    applied = tuple(recorded[v] for v in sorted(recorded))
    return SchemaStatus(applied=applied, pending=tuple(pending), unversioned=unversioned)


def pg_message(exc: psycopg.Error) -> str:
    """The server's message for ``exc`` (with its hint), else psycopg's text, on one line."""
    diag = exc.diag
    message = diag.message_primary or " ".join(str(exc).split())
    if diag.message_hint:
        message += f" (hint: {diag.message_hint})"
    return message


def _check_owner(conn: psycopg.Connection[TupleRow]) -> None:
    """Refuse a login that could not see the rows it migrates (as ``schema.sql`` does)."""
    row = conn.execute(
        "SELECT current_user, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    if row is not None and not row[1]:
        raise StorageError(
            f"migration failed: role {row[0]} cannot own the Switchboard schema (hint: apply it"
            f" as a superuser, or run: ALTER ROLE {row[0]} BYPASSRLS)"
        )


def _exists(conn: psycopg.Connection[TupleRow], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"public.{table}",)).fetchone()
    return bool(row and row[0])


def _recorded(conn: psycopg.Connection[TupleRow]) -> dict[int, AppliedMigration]:
    rows = conn.execute(
        "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version"
    ).fetchall()
    return {row[0]: AppliedMigration(*row) for row in rows}


def _pending(
    known: tuple[Migration, ...], recorded: dict[int, AppliedMigration]
) -> list[Migration]:
    """The known versions not in ``recorded``, after checking the recorded ones.

    Raises:
        StorageError: see :func:`migrate`.
    """
    by_version = {m.version: m for m in known}
    newest_known = max(by_version)
    for version, row in sorted(recorded.items()):
        ours = by_version.get(version)
        if ours is None:
            raise StorageError(
                f"the database is at schema version {max(recorded)}: version {version:04d}_"
                f"{row.name} (applied {row.applied_at:%Y-%m-%d %H:%M} UTC) is newer than this"
                f" switchboard knows (up to {newest_known:04d}); run the release that applied it"
            )
        if ours.checksum != row.checksum:
            source = "schema.sql" if version == 1 else f"orchestrator/migrations/{ours.label}.sql"
            raise StorageError(
                f"migration {ours.label} ({source}) was edited after it was applied"
                f" (sha256 {row.checksum[:12]}... in the database, {ours.checksum[:12]}... now):"
                " an applied migration never changes; put the change in a new file"
            )
    newest_applied = max(recorded, default=0)
    pending = [m for m in known if m.version not in recorded]
    for m in pending:
        if m.version < newest_applied:
            raise StorageError(
                f"migration {m.label} is older than the database's version {newest_applied}"
                " and was never applied (added out of order?): give it a version above"
                f" {newest_applied:04d}"
            )
    return pending
