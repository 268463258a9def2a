"""CPU, memory and file descriptors of a process tree, read from ``/proc`` (Linux).

``proc(5)``: ``/proc/PID/stat`` fields 14-17 are ``utime``, ``stime``,
``cutime``, ``cstime`` in clock ticks (``cutime``/``cstime``: children that
exited and were waited for, so a worker that ends mid-step still counts);
``/proc/PID/status`` ``VmRSS`` is the resident set in KiB; ``/proc/PID/fd``
lists the open file descriptors.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, CPU seconds of the process and its waited-for children), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): utime is field 14 -> index 11.
    ticks = sum(int(f) for f in fields[11:15])
    return comm, int(fields[1]), ticks * TICK_S


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _all() -> dict[int, tuple[str, int, float]]:
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(int(name))
            if info is not None:
                out[int(name)] = info
    return out


class ProcessTree:
    """A process and its descendants, less those whose command name is in ``exclude``."""

    def __init__(self, root: int, exclude: Iterable[str] = ()) -> None:
        self.root = root
        self.exclude = frozenset(exclude)

    def members(self) -> dict[int, tuple[str, int, float]]:
        procs = _all()
        keep: dict[int, tuple[str, int, float]] = {}
        if self.root not in procs:
            return keep
        frontier = [self.root]
        while frontier:
            pid = frontier.pop()
            if procs[pid][0] in self.exclude and pid != self.root:
                continue
            keep[pid] = procs[pid]
            frontier.extend(p for p, (_, ppid, _) in procs.items() if ppid == pid)
        return keep

    def cpu_s(self) -> float:
        return sum(cpu for _, _, cpu in self.members().values())

    def rss_mib(self) -> float:
        return sum(_rss_kib(pid) for pid in self.members()) / 1024.0

    def fds(self) -> int:
        return sum(_fds(pid) for pid in self.members())


class ProcessTrees:
    """Several trees measured as one (a fleet: its instances and its balancer)."""

    def __init__(self, trees: Iterable[ProcessTree]) -> None:
        self.trees = list(trees)

    def cpu_s(self) -> float:
        return sum(t.cpu_s() for t in self.trees)

    def rss_mib(self) -> float:
        return sum(t.rss_mib() for t in self.trees)

    def fds(self) -> int:
        return sum(t.fds() for t in self.trees)


def postmaster_pid(pgdata: Path) -> int | None:
    """The PostgreSQL server's PID from ``postmaster.pid`` (its first line)."""
    try:
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


class PeakRss:
    """Samples a tree's RSS every ``interval_s`` in a thread; ``peak_mib`` is the largest seen."""

    def __init__(self, tree: ProcessTree | ProcessTrees, interval_s: float = 0.5) -> None:
        self.tree = tree
        self.interval_s = interval_s
        self.peak_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self.tree.rss_mib())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, self.tree.rss_mib())
