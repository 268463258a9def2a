"""``serve --workers N``: N worker processes on one port, and the parent that keeps them.

The parent does the once-only work: the database (embedded PostgreSQL or
``DATABASE_URL``), ``migrate``, the bootstrap (example agent, development
credentials), the session-token keyring (in development mode one random
secret, so a token minted by one worker is good on every other), a fresh run
folder ``DATA_DIR/run/<parent pid>/`` (the call table, and
``PROMETHEUS_MULTIPROC_DIR`` for the metrics; run folders of parents no longer
running are removed at start), the listening sockets, and draining the event
spool. Then it starts the workers (:mod:`.worker_main`) and keeps them:

- a worker that exits is restarted after a backoff (0.5 s, doubling to 30 s;
  back to 0.5 s once a worker has run for a minute), logged as
  ``worker.exited``; its slot in the call table is cleared (its calls died with
  it) and ``prometheus_client.multiprocess.mark_process_dead`` drops its live
  gauges;
- SIGTERM or SIGINT is forwarded to every worker as SIGTERM: each drains (no
  new calls on any door, /ready 503, calls in flight end, expected Twilio
  streams arrive or expire; at most ``DRAIN_TIMEOUT_S``), then exits; the
  parent exits when all have. A second SIGTERM or SIGINT is forwarded too, and
  the workers stop at once. Workers run in their own session, so a terminal's
  Ctrl-C reaches only the parent, which forwards it once.
- If the parent dies, each worker sees end of file on its standard input and
  drains.

Sharing the port: the parent binds one listening socket per worker, all on
the same port with ``SO_REUSEPORT``, and worker ``i`` inherits socket ``i``
(hypercorn's ``fd://`` bind); the kernel hashes each new connection to one of
the sockets. Measured with ``bench/bench_spread.py`` (README, "Serving:
workers and capacity"), the alternative, one socket shared by every worker,
spreads calls by whichever process wakes first: 100 idle calls held open
landed 97 / 3, 74 / 26 and 76 / 24 on two workers, which would refuse calls
at one worker's capacity with the other nearly empty; per-worker sockets
spread them evenly (by hash, not by load: a worker busy with CPU still gets
its share, so its capacity, not the spread, keeps its calls safe). Because
the parent owns the sockets, ``--port 0`` works (the parent learns the port
before any worker starts), and a connection that arrives while worker ``i``
restarts waits in socket ``i``'s queue for the new worker instead of being
reset.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import structlog
import trio
from prometheus_client.multiprocess import mark_process_dead

from . import devcreds
from .call_table import CallTable
from .config import Settings
from .post_call import keep_posting
from .recording_store import open_store
from .recording_sweep import keep_sweeping
from .recovery import keep_recovering
from .server import announce, final_drain, started_database, warn_dev_mode
from .store import Store
from .worker_main import WorkerSpec

log = structlog.get_logger("switchboard.workers")

BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 30.0
STABLE_AFTER_S: Final = 60.0
"""A worker that ran this long is restarted after the shortest backoff."""
BACKLOG: Final = 1024
METRICS_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


class WorkerStartError(RuntimeError):
    """A worker exited before it listened, at the server's start."""


def next_backoff(previous_s: float, ran_s: float) -> float:
    """The wait before restarting a worker that ran ``ran_s`` seconds, after a wait of
    ``previous_s`` before its last start (0: none)."""
    if previous_s <= 0 or ran_s >= STABLE_AFTER_S:
        return BACKOFF_FIRST_S
    return min(BACKOFF_MAX_S, previous_s * 2)


@contextlib.contextmanager
def run_folder(data_dir: Path) -> Iterator[Path]:
    """``data_dir/run/<pid>``, new and empty, removed at the end; stale siblings removed."""
    root = data_dir / "run"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if not (old.name.isdigit() and _alive(int(old.name))):
            shutil.rmtree(old, ignore_errors=True)
    folder = root / str(os.getpid())
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "metrics").mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


@contextlib.contextmanager
def listen(host: str, port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` listening TCP sockets on one port (``port`` 0: any free port), in one
    ``SO_REUSEPORT`` group, inheritable; closed at the end."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(BACKLOG)
            sock.set_inheritable(True)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class Pool:
    """The parent's view of its workers."""

    settings: Settings
    spec: WorkerSpec
    """The spec of worker 0; each worker's is this with its own index, socket and pipe."""
    listen_fds: list[int]
    table: CallTable
    stopping: bool = False
    stopped: trio.Event = field(default_factory=trio.Event)
    """Set with ``stopping``: wakes the workers' restart backoffs."""
    processes: dict[int, trio.Process] = field(default_factory=dict)

    def stop(self) -> None:
        """Stop restarting workers and make every worker drain (SIGTERM)."""
        self.stopping = True
        self.stopped.set()
        self.forward(signal.SIGTERM)

    def forward(self, signum: int) -> None:
        """Send every running worker ``signum``."""
        for process in list(self.processes.values()):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    async def keep(self, index: int, *, task_status: trio.TaskStatus[None]) -> None:
        """Run worker ``index``, and run it again whenever it exits, until stopping."""
        backoff = 0.0
        first = True
        while True:
            started = trio.current_time()
            await self._run_once(index, task_status if first else None)
            first = False
            if self.stopping:
                return
            backoff = next_backoff(backoff, trio.current_time() - started)
            log.warning("worker.restarting", worker=index, in_s=backoff)
            with trio.move_on_after(backoff):
                await self.stopped.wait()
            if self.stopping:
                return

    async def _run_once(self, index: int, task_status: trio.TaskStatus[None] | None) -> bool:
        """Start worker ``index`` and wait for it to exit; whether it got to listen."""
        read_fd, write_fd = os.pipe()
        spec = replace(self.spec, index=index, ready_fd=write_fd, listen_fd=self.listen_fds[index])
        env = dict(os.environ)
        env[METRICS_ENV] = str(spec.metrics_dir)
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "switchboard.orchestrator.worker_main"],
                stdin=subprocess.PIPE,
                pass_fds=(spec.listen_fd, write_fd),
                env=env,
                start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.processes[index] = process
        log.info("worker.started", worker=index, pid=process.pid)
        ready = False
        try:
            assert process.stdin is not None
            with contextlib.suppress(trio.BrokenResourceError):  # it died at once: seen below
                await process.stdin.send_all(spec.encode())
            async with trio.lowlevel.FdStream(read_fd) as pipe:
                ready = (await pipe.receive_some(64)).startswith(b"ready")
            if ready and task_status is not None:
                task_status.started()
            elif not ready and task_status is not None:
                code = await process.wait()
                raise WorkerStartError(f"worker {index} exited with {code} before listening")
            code = await process.wait()
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:  # cancelled: stop it, then reap it
                    process.kill()
                    await process.wait()
                with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                    assert process.stdin is not None
                    await process.stdin.aclose()
            del self.processes[index]
            self.table.clear_worker(index)
            mark_process_dead(process.pid, str(spec.metrics_dir))  # type: ignore[no-untyped-call]
        level = log.info if self.stopping else log.error
        level("worker.exited", worker=index, pid=process.pid, exit=_describe(code))
        return ready


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return str(code)


async def _forward_signals(pool: Pool) -> None:
    """The first SIGTERM or SIGINT: the workers drain; the next ones: they stop at once."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
        async for signum in received:
            name = signal.Signals(signum).name
            if not pool.stopping:
                log.warning("stopping: the workers drain", signal=name)
                pool.stop()
            else:
                log.warning("stopping now", signal=name)
                pool.forward(signal.SIGTERM)


async def serve_workers(settings: Settings) -> None:
    """Run ``settings.workers`` worker processes on one port until they have all stopped
    (see the module docstring).

    Raises:
        WorkerStartError: a worker exited before it listened, at start.
    """
    async with started_database(settings) as (dsn, store, creds, _):
        await _run_pool(settings, dsn, store, creds)


async def _run_pool(
    settings: Settings, dsn: str, store: Store, creds: devcreds.DevCredentials
) -> None:
    with (
        run_folder(settings.data_dir) as folder,
        listen(settings.host, settings.port, settings.workers) as sockets,
    ):
        settings = replace(settings, port=sockets[0].getsockname()[1])
        reservations = settings.workers * settings.max_calls_per_worker
        table = CallTable.create(
            folder / "calls", workers=settings.workers, reservations=reservations
        )
        spec = WorkerSpec(
            index=0,
            settings=settings,
            dsn=dsn,
            creds=creds,
            keyring=settings.keyring(),
            listen_fd=sockets[0].fileno(),
            ready_fd=-1,
            table_path=folder / "calls",
            metrics_dir=folder / "metrics",
        )
        pool = Pool(settings, spec, [sock.fileno() for sock in sockets], table)
        warn_dev_mode(settings)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_forward_signals, pool)
                spool, interval_s = settings.data_dir / "spool", settings.spool_drain_interval_s
                nursery.start_soon(keep_recovering, store, spool, interval_s)
                sweep_every_s = settings.recording_sweep_interval_s  # here only: one per server
                nursery.start_soon(keep_sweeping, store, open_store(settings), sweep_every_s)
                nursery.start_soon(keep_posting, store, settings)  # also one per server
                async with trio.open_nursery() as workers:
                    async with trio.open_nursery() as starting:  # all at once; each listens
                        for index in range(settings.workers):
                            starting.start_soon(workers.start, pool.keep, index)
                    host = f"[{settings.host}]" if ":" in settings.host else settings.host
                    announce(settings, [f"http://{host}:{settings.port}"], settings.workers)
                nursery.cancel_scope.cancel()  # every worker has stopped
            await final_drain(store, settings.data_dir / "spool")
        finally:
            table.close()
