"""An embedded PostgreSQL server, for when no ``DATABASE_URL`` is given.

The server is real PostgreSQL shipped in the ``pgserver`` wheel, with its data
in ``<data_dir>/pgdata``. It listens on a Unix socket only (in the data folder
when the path is short enough), and logs in the superuser ``postgres`` without
a password::

    with start_embedded(Path("var")) as pg:
        migrate(pg.uri)
        db = Database(pg.uri)

Started as root, ``pgserver`` runs the server as a system user ``pgserver``
(created if missing) and opens read and traverse permissions on the data
folder's parents.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, final

from .errors import StorageError

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

__all__ = ["EmbeddedPostgres", "start_embedded"]


@final
class EmbeddedPostgres:
    """A running embedded server; stop it with :meth:`stop` or a ``with`` block.

    Attributes:
        data_dir: the folder given to :func:`start_embedded`.
        uri: libpq URI of the ``postgres`` database as the superuser ``postgres``,
            for example ``postgresql://postgres:@/postgres?host=/srv/sb/pgdata``.
    """

    def __init__(self, server: PostgresServer, data_dir: Path) -> None:
        self._server = server
        self.data_dir = data_dir
        self.uri: str = server.get_uri()
        self._stopped = False

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop``, fast mode). The data stays. Safe to call twice."""
        if not self._stopped:
            self._stopped = True
            self._server.cleanup()

    def __enter__(self) -> EmbeddedPostgres:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_embedded(data_dir: Path) -> EmbeddedPostgres:
    """Start (or attach to) the embedded server whose data lives in ``data_dir / "pgdata"``.

    The first start initialises the cluster (``initdb``); later starts reuse it.
    Takes about a second. ``data_dir`` is created if missing.

    ``pgserver`` keeps its lock file in the XDG runtime directory; when
    ``XDG_RUNTIME_DIR`` is not set this sets it, for the whole process, to a
    private folder (mode 0700) in the temporary directory, instead of letting
    ``platformdirs`` warn and fall back.

    Raises:
        StorageError: the server did not start (the message names its log file).
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _ensure_runtime_dir()
    # Imported only now: pgserver reads XDG_RUNTIME_DIR when it is imported.
    from pgserver.postgres_server import get_server

    pgdata = data_dir / "pgdata"
    try:
        server = get_server(str(pgdata), cleanup_mode="stop")
    except (subprocess.SubprocessError, OSError, AssertionError) as exc:
        raise StorageError(
            f"embedded PostgreSQL did not start in {pgdata}: {exc} (log: {pgdata / 'log'})"
        ) from exc
    return EmbeddedPostgres(server, data_dir)


def _ensure_runtime_dir() -> None:
    """Point ``XDG_RUNTIME_DIR`` at a private folder when it is unset (XDG base directory spec:
    owned by the user, mode 0700)."""
    if os.environ.get("XDG_RUNTIME_DIR") or not hasattr(os, "geteuid"):
        return
    path = Path(tempfile.gettempdir()) / f"switchboard-runtime-{os.geteuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise StorageError(f"cannot create the runtime folder {path}: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise StorageError(f"{path} is not a folder owned by this user; set XDG_RUNTIME_DIR")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(path)
