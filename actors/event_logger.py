"""The event logger: numbers every event of a call and writes them in batches.

Events arrive from every actor on one channel; the logger gives each the next
``seq`` (1, 2, 3... with no gaps) and a wall-clock ``ts`` as it arrives, and
its receive loop never waits on the database, so no actor on the audio path
does either. A separate task writes batches (at most ``batch_max`` events, an
event waiting at most ``flush_interval_s``) through ``write_batch`` in a worker
thread (psycopg is synchronous). Writes are idempotent on ``(session_id, seq)``, so
a batch whose write failed is simply retried, with backoff. When the call
ends, what is left is written; if the database is still unreachable after
``final_attempts`` tries, they are handed to ``on_unwritten`` and the logger
ends: the call's journal, which has had every event since it was numbered
(``on_logged``), is then kept for a later drain, so no event is lost (see
``switchboard.orchestrator.journal``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
import trio

from switchboard.orchestrator.store import EventRow

from .context import CallContext
from .messages import CallEvent

log = structlog.get_logger("switchboard.event_logger")

WriteBatch = Callable[[Sequence[EventRow]], None]
OnLogged = Callable[[EventRow], None]
"""Called with each event as soon as it is numbered, in the logger's task; must not block."""
OnWritten = Callable[[Sequence[EventRow]], None]
"""Called with each batch once PostgreSQL has committed it, in the logger's task; must
not block (the server's database write lag is measured there)."""
OnUnwritten = Callable[[Sequence[EventRow]], None]
"""Called once, at the end, with the events the database never took (none: not called)."""
RunSync = Callable[..., Awaitable[Any]]
"""How a blocking call runs off the call's tasks: ``await run_sync(fn, *args)``;
``trio.to_thread.run_sync`` by default (a replay runs its in-memory store inline)."""


class EventLogger:
    def __init__(
        self,
        ctx: CallContext,
        *,
        inbox: trio.MemoryReceiveChannel[CallEvent],
        write_batch: WriteBatch,
        batch_max: int = 100,
        flush_interval_s: float = 0.25,
        final_attempts: int = 3,
        on_logged: OnLogged | None = None,
        on_unwritten: OnUnwritten | None = None,
        on_written: OnWritten | None = None,
        run_sync: RunSync | None = None,
    ) -> None:
        self.ctx = ctx
        self._run_sync: RunSync = run_sync or trio.to_thread.run_sync
        self._inbox = inbox
        self._write_batch = write_batch
        self._batch_max = batch_max
        self._flush_interval_s = flush_interval_s
        self._final_attempts = final_attempts
        self._on_logged = on_logged
        self._on_unwritten = on_unwritten
        self._on_written = on_written
        self._pending: list[EventRow] = []
        self._seq = 0
        self._closed = False
        self._wake = trio.Event()
        self.written = 0
        self.unwritten = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Log until every sender has closed its end of the channel.

        Shielded from cancellation: when a call is cancelled (server shutdown),
        its actors still close their event sinks in their ``finally`` blocks,
        and every event sent until then, ``session.end`` included, is written.
        """
        with trio.CancelScope(shield=True):
            await self._run(task_status)

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._flusher)
            task_status.started()
            try:
                async for event in self._inbox:
                    self._seq += 1
                    row = EventRow(
                        seq=self._seq,
                        type=event.type,
                        ts=datetime.now(UTC),
                        t_ms=round(event.t_ms, 3),
                        payload=_jsonable(event.payload),
                    )
                    self._pending.append(row)
                    if self._on_logged is not None:
                        self._on_logged(row)
                    if len(self._pending) == 1 or len(self._pending) >= self._batch_max:
                        self._wake.set()  # a batch begins (its clock starts), or is full
            finally:
                self._closed = True
                self._wake.set()

    async def _flusher(self) -> None:
        """Write each batch ``flush_interval_s`` after its first event (at once when full,
        and at the end); with nothing to write it sleeps until an event comes, so a
        quiet call costs no wake-ups."""
        backoff_s = 0.2
        while True:
            if not self._pending and not self._closed:
                await self._wake.wait()
                self._wake = trio.Event()
            if not self._closed and len(self._pending) < self._batch_max:
                with trio.move_on_after(self._flush_interval_s):
                    await self._wake.wait()
            self._wake = trio.Event()
            if self._closed:
                with trio.CancelScope(shield=True):
                    await self._final_flush()
                return
            if self._pending and not await self._write_some():
                await trio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
            else:
                backoff_s = 0.2

    async def _write_some(self) -> bool:
        batch = self._pending[: self._batch_max]
        try:
            await self._run_sync(self._write_batch, batch)
        except Exception as exc:
            log.warning("event batch not written; will retry", error=repr(exc), rows=len(batch))
            return False
        del self._pending[: len(batch)]
        self.written += len(batch)
        if self._on_written is not None:
            self._on_written(batch)
        return True

    async def _final_flush(self) -> None:
        # Bounded by attempts, not by a clock: each write is bounded by the
        # pool's own timeout, and a deadline here would only add a way to lose
        # events (under a MockClock, time even jumps while a write runs).
        attempts = 0
        while self._pending and attempts < self._final_attempts:
            if not await self._write_some():
                attempts += 1
                await trio.sleep(0.2 * 2**attempts)
        if self._pending:
            self.unwritten = len(self._pending)
            log.warning("events not written to the database", rows=self.unwritten)
            if self._on_unwritten is not None:
                self._on_unwritten(self._pending)
            self._pending = []


def _jsonable(payload: object) -> dict[str, object]:
    """A JSON-safe copy of an event payload (UUIDs, tuples and the like become text/lists)."""
    result: dict[str, object] = json.loads(json.dumps(payload, default=str))
    return result
