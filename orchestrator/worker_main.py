"""One worker process of ``serve --workers N``: ``python -m switchboard.orchestrator.worker_main``.

The parent (:mod:`.workers`) starts it with its listening socket and a
readiness pipe as inherited file descriptors, ``PROMETHEUS_MULTIPROC_DIR`` in
its environment, and a :class:`WorkerSpec` on standard input (a 4-byte
big-endian length, then the spec pickled: parent and child are the same
program). Standard input then stays open: end of file means the parent is
gone, and the worker drains and exits as on SIGTERM.

The worker runs its own Trio loop and hypercorn on the inherited socket
(``fd://N``), with a :class:`~.runtime.Runtime` whose admission uses slot
``index`` of the shared call table, and writes ``ready`` to the pipe once it
listens. SIGTERM or SIGINT drains (see :func:`.server.drain`); a second one
stops at once.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import structlog
import trio

from . import devcreds, logs
from .admission import Admission
from .call_table import CallTable
from .config import Settings
from .db import Database
from .metrics import ServerMetrics
from .recovery import instance_id
from .server import build_runtime, example_agent, prepare_greetings, run_http
from .store import Store
from .tokens import Keyring

log = structlog.get_logger("switchboard.worker")

LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class WorkerSpec:
    """What the parent tells a worker.

    Attributes:
        index: the worker's number, 0 to N-1 (its slot in the call table, its
            ``worker=`` in the logs).
        settings: the server's settings, with the real port.
        dsn: the PostgreSQL the parent migrated.
        creds: the development credentials (API key, Twilio auth token).
        keyring: the session-token keyring every worker signs and verifies with
            (in development mode, one random secret made by the parent).
        listen_fd: its listening socket (one of the port's SO_REUSEPORT group), inherited.
        ready_fd: the write end of the readiness pipe, inherited.
        table_path: the shared call table.
        metrics_dir: ``PROMETHEUS_MULTIPROC_DIR``.
    """

    index: int
    settings: Settings
    dsn: str
    creds: devcreds.DevCredentials
    keyring: Keyring
    listen_fd: int
    ready_fd: int
    table_path: Path
    metrics_dir: Path

    def encode(self) -> bytes:
        """The spec as the worker reads it on standard input."""
        data = pickle.dumps(self)
        return LENGTH.pack(len(data)) + data

    @classmethod
    def read(cls, stream: BinaryIO) -> WorkerSpec:
        """Read a spec written by :meth:`encode`.

        Raises:
            EOFError: the stream ended first. TypeError: it held something else.
        """
        (size,) = LENGTH.unpack(_read_exactly(stream, LENGTH.size))
        spec = pickle.loads(_read_exactly(stream, size))
        if not isinstance(spec, cls):
            raise TypeError(f"expected a WorkerSpec, got {type(spec).__name__}")
        return spec


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise EOFError("the parent closed standard input before the spec was complete")
        data += chunk
    return data


async def run_worker(spec: WorkerSpec) -> None:
    """Serve until drained or cancelled (see the module docstring)."""
    settings = spec.settings
    metrics = ServerMetrics(multiprocess_dir=spec.metrics_dir)
    table = CallTable.attach(spec.table_path)
    admission = Admission(table, spec.index, metrics)
    db = Database(spec.dsn, settings.database_pool_size(parent=False))
    try:
        store = Store(db, owner=instance_id(settings.data_dir))
        runtime = build_runtime(
            settings, store, spec.creds, keyring=spec.keyring, admission=admission
        )
        await prepare_greetings(runtime.resources, [example_agent(settings)])
        admission.open(
            max_calls=settings.max_calls_per_worker,
            max_local_calls=settings.local_calls_per_worker,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_parent)

            async def http(task_status: trio.TaskStatus[list[str]]) -> None:
                await run_http(
                    runtime,
                    f"fd://{spec.listen_fd}",
                    signals=(signal.SIGTERM, signal.SIGINT),
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()

            urls = await nursery.start(http)
            log.info("worker listening", urls=urls, pid=os.getpid())
            os.write(spec.ready_fd, b"ready\n")
            os.close(spec.ready_fd)
    finally:
        db.close()
        table.close()


async def _watch_parent() -> None:
    """End of file on standard input: the parent is gone; drain as on SIGTERM."""
    stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stream:
        while await stream.receive_some(1024):
            pass
    log.warning("the parent process is gone; draining")
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> int:
    spec = WorkerSpec.read(sys.stdin.buffer)
    logs.configure(spec.settings.log_format, spec.settings.log_level, worker=spec.index)
    try:
        trio.run(run_worker, spec)
    except KeyboardInterrupt:
        return 1
    return 0


if __name__ == "__main__":
    # Run as ``-m``, this file is ``__main__``; the spec was pickled with the class of the
    # module's real name, so run that module's main.
    from switchboard.orchestrator.worker_main import main as _main

    raise SystemExit(_main())
