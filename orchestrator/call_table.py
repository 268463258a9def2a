"""The call counts every worker process of one server shares, and the admission rule.

The table is a small file the parent process creates in the server's run
folder and every worker maps (``mmap``, ``MAP_SHARED``); a single-process
server keeps the same table in anonymous memory. It holds:

- per worker slot: its pid, its capacity (``MAX_CALLS_PER_WORKER``), its
  capacity for calls whose first provider is ``local``
  (``MAX_LOCAL_CALLS_PER_WORKER``), and its calls in progress (all, and
  local-first). Only the worker writes its slot, except that the parent
  zeroes the slot of a worker that died (its calls died with it);
- reservations: one per Twilio call whose webhook was answered and whose
  stream has not arrived yet, keyed by the admission token's hash, with an
  expiry on ``CLOCK_MONOTONIC`` (``time.monotonic()``, the same clock in every
  process of one Linux host) a little after the token's own.

Every read-modify-write holds ``flock(LOCK_EX)`` on the file (plus a thread
lock): under 10 us of numpy work per operation (measured: admit and finish of a
call 16 us together), nothing else, so a worker's event loop
never waits long; a worker killed while holding it loses it with its file
descriptor, so no crash leaves the table locked.

The rule (``C`` the sum of the live workers' capacities, ``A`` their calls in
progress, ``R`` the reservations not yet expired; the same with ``local``
counts for local-first calls):

- a webhook is answered with a stream only if ``A + R < C``, and then
  reserves (``R += 1``);
- a browser or ``/v1/realtime`` call is admitted only if this worker has room
  (``A_w < C_w``) and the server has room beyond what is reserved
  (``A + R < C``);
- a stream that presents a valid admission token is never refused: it turns
  its reservation into a call (``R -= 1``, ``A_w += 1``), wherever it lands.

Invariant: ``A + R <= C`` for the server as a whole, except while a dead
worker's capacity is missing; each worker's calls stay within its capacity,
except for reserved streams, so a worker can exceed its capacity by at most
the reservations outstanding (with one worker, never). A stream whose
webhook was answered is never refused for capacity.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

MAGIC: Final = b"sbcalls1"
HEADER: Final = np.dtype([("magic", "S8"), ("workers", "<u4"), ("reservations", "<u4")])
WORKER: Final = np.dtype(
    [
        ("pid", "<i8"),
        ("capacity", "<i4"),
        ("local_capacity", "<i4"),
        ("active", "<i4"),
        ("local_active", "<i4"),
    ]
)
RESERVATION: Final = np.dtype(
    [("expires_at", "<f8"), ("key_hi", "<u8"), ("key_lo", "<u8"), ("local", "<i8")]
)

Refusal = Literal["capacity", "local_capacity"]
"""Why a call was refused: no room for a call, or none for a local-first call."""


@dataclass(frozen=True)
class TableCounts:
    """The server's counts at one moment (live workers only)."""

    capacity: int
    local_capacity: int
    active: int
    local_active: int
    reserved: int
    local_reserved: int
    per_worker: tuple[int, ...]
    """Calls in progress in each worker slot."""

    @property
    def full(self) -> bool:
        """No room for another call: ``active + reserved >= capacity``."""
        return self.active + self.reserved >= self.capacity


class CallTable:
    """Shared call counts (see the module docstring). Build it with :meth:`create`,
    :meth:`attach` or :meth:`in_memory`; ``worker`` arguments are slot indexes,
    0 to ``workers - 1``; ``now`` is ``time.monotonic()`` seconds."""

    def __init__(self, buffer: mmap.mmap, fd: int | None) -> None:
        self._mm = buffer
        self._fd = fd
        self._lock = threading.Lock()
        header = np.ndarray((1,), HEADER, buffer=buffer)[0]
        if bytes(header["magic"]) != MAGIC:
            raise ValueError("not a call table")
        self.workers = int(header["workers"])
        self.reservation_slots = int(header["reservations"])
        offset = HEADER.itemsize
        self._w: npt.NDArray[np.void] = np.ndarray(
            (self.workers,), WORKER, buffer=buffer, offset=offset
        )
        offset += WORKER.itemsize * self.workers
        self._r: npt.NDArray[np.void] = np.ndarray(
            (self.reservation_slots,), RESERVATION, buffer=buffer, offset=offset
        )

    # -- construction

    @staticmethod
    def _size(workers: int, reservations: int) -> int:
        return HEADER.itemsize + WORKER.itemsize * workers + RESERVATION.itemsize * reservations

    @staticmethod
    def _init(buffer: mmap.mmap, workers: int, reservations: int) -> None:
        header = np.ndarray((1,), HEADER, buffer=buffer)
        header[0] = (MAGIC, workers, reservations)

    @classmethod
    def create(cls, path: Path, *, workers: int, reservations: int) -> CallTable:
        """A new zeroed table in the file ``path`` (replaced if it exists), for ``workers``
        slots and ``reservations`` pending streams (the server's total capacity is enough)."""
        if workers < 1 or reservations < 1:
            raise ValueError("a call table needs at least one worker and one reservation slot")
        size = cls._size(workers, reservations)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(fd, size)
        buffer = mmap.mmap(fd, size, mmap.MAP_SHARED)
        cls._init(buffer, workers, reservations)
        return cls(buffer, fd)

    @classmethod
    def attach(cls, path: Path) -> CallTable:
        """The table another process created in ``path``.

        Raises:
            OSError: no such file. ValueError: the file is not a call table.
        """
        fd = os.open(path, os.O_RDWR)
        try:
            buffer = mmap.mmap(fd, os.fstat(fd).st_size, mmap.MAP_SHARED)
            return cls(buffer, fd)
        except (OSError, ValueError):
            os.close(fd)
            raise

    @classmethod
    def in_memory(cls, *, workers: int = 1, reservations: int = 100) -> CallTable:
        """A table for one process (anonymous memory, thread lock only)."""
        buffer = mmap.mmap(-1, cls._size(workers, reservations))
        cls._init(buffer, workers, reservations)
        return cls(buffer, None)

    def close(self) -> None:
        """Unmap the table (the file stays)."""
        del self._w, self._r
        self._mm.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if self._fd is None:
                yield
                return
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    # -- worker slots

    def set_worker(self, worker: int, *, pid: int, capacity: int, local_capacity: int) -> None:
        """Worker ``worker`` (process ``pid``) starts with no calls and these capacities."""
        with self._locked():
            self._w[worker] = (pid, capacity, local_capacity, 0, 0)

    def clear_worker(self, worker: int) -> None:
        """The worker is gone: its capacity and its calls no longer count."""
        with self._locked():
            self._w[worker] = (0, 0, 0, 0, 0)

    def worker_pid(self, worker: int) -> int:
        return int(self._w[worker]["pid"])

    # -- the rule

    def admit(self, worker: int, *, local: bool, now: float) -> Refusal | None:
        """Admit a call that starts now on ``worker``; None if admitted, else why not."""
        with self._locked():
            w = self._w[worker]
            if w["active"] >= w["capacity"]:
                return "capacity"
            if local and w["local_active"] >= w["local_capacity"]:
                return "local_capacity"
            refusal = self._server_refusal(local, now)
            if refusal is None:
                self._w["active"][worker] += 1
                if local:
                    self._w["local_active"][worker] += 1
            return refusal

    def make_local(self, worker: int, *, now: float) -> Refusal | None:
        """A call admitted on ``worker`` turned out local-first: count it there too, if
        the local capacities allow; None if done, else why not (the call stays counted)."""
        with self._locked():
            w = self._w[worker]
            if w["local_active"] >= w["local_capacity"] or self._local_full(now):
                return "local_capacity"
            self._w["local_active"][worker] += 1
            return None

    def reserve(self, key: bytes, *, local: bool, now: float, ttl_s: float) -> Refusal | None:
        """Reserve room for a stream expected within ``ttl_s`` (key: 16 bytes)."""
        with self._locked():
            refusal = self._server_refusal(local, now)
            if refusal is not None:
                return refusal
            free = np.flatnonzero(self._r["expires_at"] <= now)
            if free.size == 0:
                return "capacity"
            self._r[free[0]] = (now + ttl_s, *_key(key), int(local))
            return None

    def claim(self, worker: int, key: bytes, *, local: bool, now: float) -> bool:
        """The stream ``key`` reserved arrived on ``worker``: it becomes a call there,
        whatever the counts. Returns whether its reservation was still held."""
        with self._locked():
            held = bool(self._drop(key, now))
            self._w["active"][worker] += 1
            if local:
                self._w["local_active"][worker] += 1
            return held

    def release(self, key: bytes) -> None:
        """Give back the reservation ``key`` (its webhook failed after reserving)."""
        with self._locked():
            self._drop(key, None)

    def finish(self, worker: int, *, local: bool) -> None:
        """A call admitted on ``worker`` ended."""
        with self._locked():
            w = self._w[worker]
            if w["active"] > 0:
                self._w["active"][worker] -= 1
            if local and w["local_active"] > 0:
                self._w["local_active"][worker] -= 1

    def counts(self, now: float) -> TableCounts:
        """The server's counts now."""
        with self._locked():
            live = self._r["expires_at"] > now
            local = live & (self._r["local"] != 0)
            return TableCounts(
                capacity=int(self._w["capacity"].sum()),
                local_capacity=int(self._w["local_capacity"].sum()),
                active=int(self._w["active"].sum()),
                local_active=int(self._w["local_active"].sum()),
                reserved=int(live.sum()),
                local_reserved=int(local.sum()),
                per_worker=tuple(int(n) for n in self._w["active"]),
            )

    def _server_refusal(self, local: bool, now: float) -> Refusal | None:
        live = self._r["expires_at"] > now
        if int(self._w["active"].sum()) + int(live.sum()) >= int(self._w["capacity"].sum()):
            return "capacity"
        if local and self._local_full(now):
            return "local_capacity"
        return None

    def _local_full(self, now: float) -> bool:
        live = (self._r["expires_at"] > now) & (self._r["local"] != 0)
        local_active = int(self._w["local_active"].sum())
        return local_active + int(live.sum()) >= int(self._w["local_capacity"].sum())

    def _drop(self, key: bytes, now: float | None) -> int:
        hi, lo = _key(key)
        same = (self._r["key_hi"] == hi) & (self._r["key_lo"] == lo)
        found = int((same & (self._r["expires_at"] > now)).sum()) if now is not None else 0
        self._r["expires_at"][same] = 0.0
        return found


def _key(key: bytes) -> tuple[int, int]:
    if len(key) != 16:
        raise ValueError(f"a reservation key is 16 bytes, got {len(key)}")
    return int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
