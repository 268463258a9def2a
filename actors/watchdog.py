"""A watchdog whose deadline moves: stall detection as one cancel scope.

The failover policy says when it next wants to look
(:attr:`FailoverPolicy.deadline_s`: the connect timeout while a provider
connects, the stall timeout while an answer is owed, the audio-gap timeout
mid-response, infinity when nothing is owed). After every input the
supervisor moves the deadline there (lazily: see :meth:`Watchdog.set_deadline`);
when it passes, the watchdog calls back and the policy decides. There is no polling, and on
Trio's MockClock the timeout fires at exactly the virtual time it names.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio


class Watchdog:
    """Calls ``expired()`` each time the deadline (``trio.current_time()`` seconds) passes."""

    def __init__(self) -> None:
        self._deadline = math.inf
        self._armed_s = math.inf  # the scope's deadline
        self._scope: trio.CancelScope | None = None

    @property
    def deadline(self) -> float:
        return self._deadline

    def set_deadline(self, deadline: float) -> None:
        """Move the deadline (``math.inf``: nothing to watch).

        Called for every chunk of agent audio, so it is lazy: a later deadline
        is only noted (the scope wakes at the earlier one, sees the new one and
        sleeps again); only an earlier deadline moves the scope. Trio's deadline
        heap is touched about once per timeout, not once per chunk.
        """
        self._deadline = deadline
        if deadline < self._armed_s and self._scope is not None:
            self._scope.deadline = self._armed_s = deadline

    async def run(self, expired: Callable[[], Awaitable[None]]) -> None:
        """Run until cancelled; a passed deadline is cleared, then ``expired`` is awaited."""
        while True:
            with trio.CancelScope(deadline=self._deadline) as scope:
                self._scope, self._armed_s = scope, self._deadline
                await trio.sleep_forever()
            self._scope, self._armed_s = None, math.inf
            if trio.current_time() < self._deadline:
                continue  # the deadline moved later meanwhile: sleep until then
            self._deadline = math.inf
            await expired()
