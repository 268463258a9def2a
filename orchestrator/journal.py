"""The call journal: a write-ahead file of every event of a call, and how the call ended.

PostgreSQL is written in batches, a quarter of a second apart, and may be away
for minutes; the journal is what makes "no event is lost" hold anyway. Each call
appends to ``JOURNAL_DIR/<session_id>.jsonl`` (JSON lines, UTF-8):

* the header, first: ``{"journal": 1, "tenant_id", "session_id", "started_at", "pid"}``;
* one line per event as the event logger numbers it, before any database write:
  ``{"tenant_id", "session_id", "seq", "type", "ts", "t_ms", "payload"}`` (the
  spool format of earlier releases, which :func:`read_journal` still reads);
* the end, last: ``{"end": {"end_reason", "turns", "started_at", "ended_at"}}``.

Each line is one ``write(2)`` on a file opened ``O_APPEND``, so a killed process
(SIGKILL, OOM) loses no line it wrote: the data is in the kernel's page cache. The
bound is therefore the event logger's queue: an event is in the journal as soon
as the logger takes it from its channel, normally within the same scheduler tick
as ``emit``. A power cut loses what the kernel had not flushed: the journal is not
fsynced per event (one fsync per 20 ms frame would cost more than the call), only
when the call ends.

The call holds an exclusive ``flock`` on its journal while it runs. The file is
created under a temporary name, locked, then renamed, so nobody ever sees an
unlocked journal of a live call. When the call's events and its end are all in
PostgreSQL the journal is deleted; otherwise it stays for the spool drainer
(:mod:`.spool`), which takes only journals it can lock: those whose call ended
with PostgreSQL away, and those whose process died (no ``end`` line: the call is
closed as ``server lost``).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, final
from uuid import UUID

import structlog

from .store import EventRow

__all__ = ["JOURNAL_VERSION", "CallEnd", "CallJournal", "JournalContents", "read_journal"]

log = structlog.get_logger("switchboard.journal")

JOURNAL_VERSION: Final = 1


@final
@dataclass(frozen=True)
class CallEnd:
    """How a call ended: the arguments of :meth:`~.store.Store.finish_session`."""

    end_reason: str
    turns: int
    started_at: datetime
    ended_at: datetime


@final
class CallJournal:
    """The write-ahead file of one running call (see the module docstring).

    Raises:
        OSError: the folder cannot be written (from the constructor; ``append``
            and ``finish`` log the first failure and go on: the database copy
            is then the only one, as before journals existed).
    """

    def __init__(
        self, folder: Path, tenant_id: UUID, session_id: UUID, started_at: datetime
    ) -> None:
        self.tenant_id = tenant_id
        self.session_id = session_id
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{session_id}.jsonl"
        temporary = folder / f".{session_id}.{os.getpid()}.new"
        self._fd: int | None = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o600
        )
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._ids = f'"tenant_id": "{tenant_id}", "session_id": "{session_id}"'
        self._write(
            json.dumps(
                {
                    "journal": JOURNAL_VERSION,
                    "tenant_id": str(tenant_id),
                    "session_id": str(session_id),
                    "started_at": started_at.isoformat(),
                    "pid": os.getpid(),
                }
            )
        )
        os.rename(temporary, self.path)
        self._failed = False

    def append(self, row: EventRow) -> None:
        """Write one numbered event (sync, one ``write(2)``: microseconds, no fsync)."""
        body = json.dumps(
            {
                "seq": row.seq,
                "type": row.type,
                "ts": row.ts.isoformat(),
                "t_ms": row.t_ms,
                "payload": row.payload,
            }
        )
        self._write("{" + self._ids + ", " + body[1:])

    def finish(self, end: CallEnd) -> None:
        """Write the end of the call and fsync the file."""
        self._write(
            json.dumps(
                {
                    "end": {
                        "end_reason": end.end_reason,
                        "turns": end.turns,
                        "started_at": end.started_at.isoformat(),
                        "ended_at": end.ended_at.isoformat(),
                    }
                }
            )
        )
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._report(exc)

    def close(self, *, keep: bool) -> None:
        """Release the file: delete it (``keep=False``: everything is in PostgreSQL) or leave
        it, unlocked, for the spool drainer."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if not keep:
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # releases the lock

    def _write(self, line: str) -> None:
        if self._fd is None:
            return
        try:
            os.write(self._fd, (line + "\n").encode("utf-8"))
        except OSError as exc:
            self._report(exc)

    def _report(self, exc: OSError) -> None:
        if not self._failed:
            self._failed = True
            log.error("call journal not written", path=str(self.path), error=repr(exc))


@final
@dataclass
class JournalContents:
    """What :func:`read_journal` found in one file.

    ``header`` is None for a spool file of an earlier release (events only);
    ``end`` is None when the call's process died before the call ended.
    """

    header: Mapping[str, Any] | None = None
    events: dict[tuple[UUID, UUID], list[EventRow]] = field(default_factory=dict)
    end: CallEnd | None = None
    torn_tail: bool = False

    @property
    def session(self) -> tuple[UUID, UUID] | None:
        """(tenant, session) of a journal, from its header."""
        if self.header is None:
            return None
        return UUID(self.header["tenant_id"]), UUID(self.header["session_id"])


def read_journal(path: Path) -> JournalContents:
    """Parse a journal (or an earlier release's spool file).

    A last line cut short (the process died inside ``write``) is ignored and
    flagged in ``torn_tail``.

    Raises:
        ValueError: a line other than the last is not a journal record.
    """
    contents = JournalContents()
    lines = path.read_bytes().split(b"\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            _read_line(json.loads(raw), contents)
        except (ValueError, KeyError, TypeError) as exc:
            if i == last:
                contents.torn_tail = True
                break
            raise ValueError(f"{path.name} line {i + 1}: {exc!r}") from exc
    return contents


def _read_line(record: Mapping[str, Any], contents: JournalContents) -> None:
    if "journal" in record:
        if record["journal"] != JOURNAL_VERSION:
            raise ValueError(f"unknown journal version {record['journal']!r}")
        UUID(record["tenant_id"])  # checked here: a header that does not parse is no header
        UUID(record["session_id"])
        datetime.fromisoformat(record["started_at"])
        contents.header = record
    elif "end" in record:
        end = record["end"]
        contents.end = CallEnd(
            end_reason=str(end["end_reason"]),
            turns=int(end["turns"]),
            started_at=datetime.fromisoformat(end["started_at"]),
            ended_at=datetime.fromisoformat(end["ended_at"]),
        )
    else:
        key = (UUID(record["tenant_id"]), UUID(record["session_id"]))
        contents.events.setdefault(key, []).append(
            EventRow(
                seq=record["seq"],
                type=record["type"],
                ts=datetime.fromisoformat(record["ts"]),
                t_ms=record["t_ms"],
                payload=record["payload"],
            )
        )
