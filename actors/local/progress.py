"""The local provider's own account of the work it owes an answer for.

Recognition and synthesis run in shared worker processes, where a job may
wait behind other calls' jobs. :class:`WorkTracker` records which answer
work is in flight (the end of a recognition, a synthesis) and since when;
:func:`report_progress` turns that into a :class:`ProviderWorking` every
:data:`PROGRESS_INTERVAL_S` while it lasts, so the supervisor takes queueing
for progress rather than for a stall. (The failover policy still bounds how
long progress may stand in for output: ``progress_limit_ms``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from typing import Final

import trio

from ..messages import Outbox, ProviderWorking

__all__ = ["PROGRESS_INTERVAL_S", "WorkTracker", "report_progress"]

PROGRESS_INTERVAL_S: Final = 0.5
"""How often work in flight is reported: a quarter of the default stall timeout."""


class WorkTracker:
    """Answer work in flight for one provider instance (one call), on the Trio clock."""

    def __init__(self) -> None:
        self._work: dict[int, tuple[str, float]] = {}
        self._ids = count()
        self._started = trio.Event()

    def begin(self, activity: str) -> int:
        """Answer work begins (``activity``: ``recognizing``, ``synthesizing``); a token for
        :meth:`end`. (For work that starts in one task and ends in another.)"""
        token = next(self._ids)
        self._work[token] = (activity, trio.current_time())
        self._started.set()
        return token

    def end(self, token: int) -> None:
        """The work of ``token`` is over (unknown or ended tokens are fine)."""
        self._work.pop(token, None)

    @contextmanager
    def working(self, activity: str) -> Iterator[None]:
        """Count the block as answer work."""
        token = self.begin(activity)
        try:
            yield
        finally:
            self.end(token)

    @property
    def oldest(self) -> tuple[str, float] | None:
        """(activity, started at in seconds) of the longest-running work, or None."""
        return min(self._work.values(), key=lambda w: w[1]) if self._work else None

    async def wait_busy(self) -> None:
        """Return once some work is in flight."""
        while not self._work:
            await self._started.wait()
            self._started = trio.Event()


async def report_progress(
    work: WorkTracker,
    outbox: Outbox,
    interval_s: float = PROGRESS_INTERVAL_S,
) -> None:
    """Send :class:`ProviderWorking` every ``interval_s`` while ``work`` is busy (runs until
    cancelled). The first report comes ``interval_s`` after work begins: short work,
    the usual case, is never reported."""
    while True:
        await work.wait_busy()
        await trio.sleep(interval_s)
        oldest = work.oldest
        if oldest is not None:
            activity, since_s = oldest
            elapsed_ms = (trio.current_time() - since_s) * 1000
            await outbox.send(ProviderWorking(activity, round(elapsed_ms, 1)))
