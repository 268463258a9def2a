"""PostgreSQL access: the schema migration and a small pool of tenant-scoped connections.

Everything here is synchronous and blocking. From Trio, call it in a worker
thread, never on the event loop::

    await trio.to_thread.run_sync(store.append_events, tenant_id, session_id, batch)

A :class:`Database` may be shared by any number of threads: each ``with`` block
has a connection of its own for its duration.

Row-level security (see ``schema.sql``) is what keeps tenants apart, so every
pooled connection runs as ``switchboard_app``, a role that owns nothing: after
logging in (the embedded server logs in the superuser ``postgres``), each
connection runs ``SET ROLE switchboard_app``. Queries then go through one of
two doors:

* ``with db.tenant(tenant_id) as cur:`` a transaction that sees and writes only
  that tenant's rows (``app.tenant_id`` set for the transaction);
* ``with db.anonymous() as cur:`` a transaction with no tenant, which sees no
  rows; it is for the ``switchboard_*`` SECURITY DEFINER look-ups only.

``SET ROLE`` guards against mistakes in our own SQL, not against an attacker
who can run arbitrary SQL (``RESET ROLE`` would undo it); for that, log in as a
role that is only a member of ``switchboard_app``.

Errors: every psycopg error leaving this module is a
:class:`~switchboard.orchestrator.errors.StorageError`, with the psycopg error
as its ``__cause__``.
"""

from __future__ import annotations

import importlib.resources
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Final, final
from uuid import UUID

import psycopg
from psycopg import pq
from psycopg.rows import TupleRow

from .errors import StorageError

__all__ = ["APP_ROLE", "Database", "migrate", "schema_sql"]

APP_ROLE: Final = "switchboard_app"
"""The role every pooled connection runs as (created by ``schema.sql``)."""

_MIGRATE_LOCK_KEY: Final = 0x5357_4254_4D49_4752  # "SWBTMIGR", an arbitrary constant

Connection = psycopg.Connection[TupleRow]
Cursor = psycopg.Cursor[TupleRow]


def schema_sql() -> str:
    """The text of ``schema.sql``: package data of ``switchboard``, else the repository's file."""
    try:
        return importlib.resources.files("switchboard").joinpath("schema.sql").read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        return (Path(__file__).resolve().parent.parent / "schema.sql").read_text("utf-8")


def migrate(dsn: str) -> None:
    """Apply ``schema.sql`` to the database at ``dsn``; safe to run at every start.

    Runs as the role ``dsn`` logs in as (the owner: a superuser, or a role with
    BYPASSRLS and CREATEROLE), in one transaction, holding a transaction-level
    advisory lock so that concurrent migrations of one database run one after
    the other.

    Raises:
        StorageError: the server is unreachable, or the schema could not be applied
            (the owner lacks the rights above, for example).
    """
    script = schema_sql()
    try:
        with psycopg.connect(dsn) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK_KEY,))
            conn.execute(script.encode())
    except psycopg.Error as exc:
        raise StorageError(f"migration failed: {_describe(exc)}") from exc


def _describe(exc: psycopg.Error) -> str:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    if diag.message_hint:
        message += f" (hint: {diag.message_hint})"
    return message


@final
class Database:
    """A thread-safe pool of at most ``pool_size`` connections to ``dsn``, as ``switchboard_app``.

    Connections open lazily and are reused. A connection is checked with a
    round trip when it is taken from the pool; a dead one is replaced by a new
    one. A connection that broke during a ``with`` block is discarded.

    Args:
        dsn: libpq connection string or URI (the owner's login, see ``migrate``).
        pool_size: maximum number of open connections (>= 1).
        timeout_s: how long to wait for a free connection, and for connecting, in
            seconds.

    Raises (from ``tenant`` and ``anonymous``):
        StorageError: no connection could be made or taken within ``timeout_s``,
            or a query failed (the psycopg error is the cause).
    """

    def __init__(self, dsn: str, pool_size: int = 4, *, timeout_s: float = 10.0) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(pool_size)
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()
        self._closed = False

    @contextmanager
    def tenant(self, tenant_id: UUID) -> Iterator[Cursor]:
        """A transaction scoped to ``tenant_id``: row-level security shows and accepts only
        that tenant's rows. Commits when the block ends, rolls back if it raises."""
        with self._transaction() as cur:
            cur.execute("SELECT set_config('app.tenant_id', %s, true)", (str(tenant_id),))
            yield cur

    @contextmanager
    def anonymous(self) -> Iterator[Cursor]:
        """A transaction with no tenant: it sees no rows of any table. Only for the
        ``switchboard_*`` SECURITY DEFINER functions of ``schema.sql``."""
        with self._transaction() as cur:
            yield cur

    def close(self) -> None:
        """Close the idle connections; connections in use close when they are given back."""
        self._closed = True
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the pool

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        with self._connection() as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except psycopg.Error as exc:
                raise StorageError(_describe(exc)) from exc

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if self._closed:
            raise StorageError("the database pool is closed")
        if not self._slots.acquire(timeout=self._timeout_s):
            raise StorageError(f"no free database connection within {self._timeout_s} s")
        conn: Connection | None = None
        try:
            conn = self._checkout()
            yield conn
        finally:
            if conn is not None:
                self._checkin(conn)
            self._slots.release()

    def _checkout(self) -> Connection:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return self._connect()
            if self._healthy(conn):
                return conn
            conn.close()

    def _checkin(self, conn: Connection) -> None:
        idle = conn.info.transaction_status == pq.TransactionStatus.IDLE
        if self._closed or conn.closed or conn.broken or not idle:
            conn.close()
        else:
            self._idle.put(conn)

    @staticmethod
    def _healthy(conn: Connection) -> bool:
        if conn.closed or conn.broken or conn.info.transaction_status != pq.TransactionStatus.IDLE:
            return False
        try:
            conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _connect(self) -> Connection:
        try:
            conn = psycopg.connect(
                self._dsn, autocommit=True, connect_timeout=max(1, round(self._timeout_s))
            )
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {_describe(exc)}") from exc
        try:
            row = conn.execute("SELECT current_user").fetchone()
            if row is None or row[0] != APP_ROLE:
                conn.execute(f"SET ROLE {APP_ROLE}")
            conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            conn.close()
            raise StorageError(
                f"cannot become {APP_ROLE} (has the schema been migrated?): {_describe(exc)}"
            ) from exc
        return conn
