"""PostgreSQL access: a pool of tenant-scoped connections (``psycopg_pool``).

Everything here is synchronous and blocking. From Trio, call it in a worker
thread, never on the event loop::

    await trio.to_thread.run_sync(store.append_events, tenant_id, session_id, batch)

A :class:`Database` may be shared by any number of threads: each ``with`` block
has a connection of its own for its duration. The schema and its versions are
:mod:`.schema` (``migrate`` is re-exported here).

Row-level security (see ``schema.sql``) is what keeps tenants apart, so every
pooled connection runs as ``switchboard_app``, a role that owns nothing: after
logging in (the embedded server logs in the superuser ``postgres``), each new
connection runs ``SET ROLE switchboard_app``. Queries then go through one of
two doors:

* ``with db.tenant(tenant_id) as cur:`` a transaction that sees and writes only
  that tenant's rows (``app.tenant_id`` set for the transaction);
* ``with db.anonymous() as cur:`` a transaction with no tenant, which sees no
  rows; it is for the ``switchboard_*`` SECURITY DEFINER look-ups only.

``SET ROLE`` guards against mistakes in our own SQL, not against an attacker
who can run arbitrary SQL (``RESET ROLE`` would undo it); for that, log in as a
role that is only a member of ``switchboard_app``.

Errors: every psycopg or pool error leaving this module is a
:class:`~switchboard.orchestrator.errors.StorageError`, with the original as its
``__cause__``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Final, Self, final
from uuid import UUID

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from .errors import StorageError
from .schema import migrate, pg_message, schema_sql

__all__ = ["APP_ROLE", "Database", "migrate", "schema_sql"]

APP_ROLE: Final = "switchboard_app"
"""The role every pooled connection runs as (created by ``schema.sql``)."""

MAX_LIFETIME_S: Final = 30 * 60.0
"""A connection is replaced after this long (plus up to 10 %), so that server-side
memory and a moved DNS name or fail-over do not stay with it forever."""
MAX_IDLE_S: Final = 5 * 60.0
"""Connections beyond the first that stayed unused this long are closed."""
RECONNECT_TIMEOUT_S: Final = 5.0
"""How long the pool's background retries (1 s, then 2 s apart) go on for one
connection before it gives up; the next request starts again at once. So once
PostgreSQL is back, a request finds a connection within about 2 s."""
FAIL_FAST_S: Final = 0.5
"""While the last connection attempt failed, a request waits this long for a
connection, then fails with the attempt's error instead of the whole timeout."""

Connection = psycopg.Connection[TupleRow]
Cursor = psycopg.Cursor[TupleRow]


@final
class _Health:
    """The outcome of the newest connection attempt: None when it worked."""

    def __init__(self) -> None:
        self.failure: str | None = None


def _connection_class(health: _Health) -> type[Connection]:
    """A connection class that notes a failed connection attempt in ``health``."""

    class TrackedConnection(psycopg.Connection[TupleRow]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            try:
                return super().connect(conninfo, **kwargs)
            except psycopg.Error as exc:
                health.failure = f"cannot connect to PostgreSQL: {pg_message(exc)}"
                raise

    return TrackedConnection


@final
class Database:
    """A thread-safe pool of at most ``pool_size`` connections to ``dsn``, as ``switchboard_app``.

    One connection opens in the background when the pool is made (the pool does
    not wait for it: a server whose PostgreSQL is down still starts), more as
    requests need them, up to ``pool_size``; a connection unused for
    :data:`MAX_IDLE_S` closes (but the first), and each is replaced after
    :data:`MAX_LIFETIME_S`. A connection is checked with an empty query when it
    is taken; a dead one is dropped (with the other idle ones that died with it)
    and the request gets another. A connection that broke during a ``with``
    block is discarded when given back.

    A request waits up to ``timeout_s`` for a free connection, or
    :data:`FAIL_FAST_S` while PostgreSQL refuses connections.

    Args:
        dsn: libpq connection string or URI (the owner's login, see ``migrate``).
        pool_size: maximum number of open connections (>= 1).
        timeout_s: how long to wait for a free connection, and for connecting, in
            seconds.

    Raises (from ``tenant`` and ``anonymous``):
        StorageError: no connection could be made or taken in time (the message
            says which), the pool is closed, or a query failed (the psycopg error
            is the cause).
    """

    def __init__(self, dsn: str, pool_size: int = 4, *, timeout_s: float = 10.0) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size}")
        self._timeout_s = timeout_s
        self._pool_size = pool_size
        self._health = _Health()
        self._in_use = 0
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            dsn,
            connection_class=_connection_class(self._health),
            kwargs={"autocommit": True, "connect_timeout": max(1, round(timeout_s))},
            min_size=1,
            max_size=pool_size,
            open=False,
            configure=self._configure,
            timeout=timeout_s,
            max_lifetime=MAX_LIFETIME_S,
            max_idle=MAX_IDLE_S,
            reconnect_timeout=RECONNECT_TIMEOUT_S,
            name="switchboard",
        )
        self._pool.open(wait=False)

    @property
    def pool_size(self) -> int:
        """The most connections this pool opens."""
        return self._pool_size

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
        """Close the idle connections and stop the pool's threads; connections in use close
        when they are given back. Later requests raise StorageError. Safe to call twice."""
        self._pool.close()

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
                raise StorageError(pg_message(exc)) from exc

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        conn = self._checkout()
        with self._lock:
            self._in_use += 1
        try:
            yield conn
        finally:
            with self._lock:
                self._in_use -= 1
            self._pool.putconn(conn)  # a broken one is discarded, an open transaction rolled back

    def _checkout(self) -> Connection:
        """A live connection, waited for in slices so that a failed connection attempt ends
        the wait early.

        The check is here rather than psycopg_pool's ``check=``: that one tries the
        dead connections of a restarted server one by one with a pause of 1, 2, 4 s
        between them (7 s for four); here the first dead one drops every dead idle
        one at once (``pool.check()``) and the request waits only for a new one.
        """
        deadline = time.monotonic() + self._timeout_s
        purged = False
        while True:
            remaining = deadline - time.monotonic()
            try:
                conn = self._pool.getconn(timeout=min(remaining, FAIL_FAST_S))
            except PoolClosed as exc:
                raise StorageError("the database pool is closed") from exc
            except PoolTimeout as exc:
                if self._health.failure is not None:
                    raise StorageError(self._health.failure) from exc
                if remaining > FAIL_FAST_S:
                    continue
                raise StorageError(self._timeout_message()) from exc
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error:
                self._pool.putconn(conn)  # broken: the pool opens another in the background
                if not purged:
                    purged = True
                    self._pool.check()  # the idle ones most likely died with it (a restart)
                continue
            return conn

    def _timeout_message(self) -> str:
        with self._lock:
            in_use = self._in_use
        if in_use >= self._pool_size:
            return (
                f"no free database connection within {self._timeout_s:g} s: all {in_use}"
                " of this process are in use (DB_POOL_SIZE)"
            )
        return f"PostgreSQL did not accept a connection within {self._timeout_s:g} s"

    def _configure(self, conn: Connection) -> None:
        """Run once on each new connection: become ``switchboard_app``, in UTC."""
        try:
            row = conn.execute("SELECT current_user").fetchone()
            if row is None or row[0] != APP_ROLE:
                conn.execute(f"SET ROLE {APP_ROLE}")
            conn.execute("SET TIME ZONE 'UTC'")
        except psycopg.Error as exc:
            self._health.failure = (
                f"cannot become {APP_ROLE} (has the schema been migrated?): {pg_message(exc)}"
            )
            conn.close()
            raise
        self._health.failure = None
