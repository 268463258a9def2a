"""A watchdog whose deadline moves: "no provider output for this long" as a cancel scope.

The supervisor arms it when it expects provider output (the caller finished
speaking, a response was requested, audio is flowing mid-response) and
disarms it when nothing is owed (the response is done, a tool is running).
Re-arming moves the live scope's deadline: there is no polling, and on
Trio's MockClock the timeout fires at exactly the virtual time it names.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio


class StallWatch:
    """Calls ``expired(kind)`` when an armed deadline passes (see the module docstring)."""

    def __init__(self) -> None:
        self._deadline = math.inf
        self._kind = ""
        self._scope: trio.CancelScope | None = None

    @property
    def armed(self) -> str | None:
        """The kind of the pending deadline (``"stall"``, ``"connect_timeout"``), or None."""
        return self._kind if math.isfinite(self._deadline) else None

    def arm(self, kind: str, timeout_ms: float) -> None:
        """Expect provider output within ``timeout_ms`` from now, else report ``kind``."""
        self._set(trio.current_time() + timeout_ms / 1000.0, kind)

    def disarm(self) -> None:
        self._set(math.inf, "")

    def _set(self, deadline: float, kind: str) -> None:
        self._deadline, self._kind = deadline, kind
        if self._scope is not None:
            self._scope.deadline = deadline

    async def run(self, expired: Callable[[str], Awaitable[None]]) -> None:
        """Run until cancelled; each passed deadline disarms the watch and calls ``expired``."""
        while True:
            with trio.CancelScope(deadline=self._deadline) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            kind = self._kind
            self.disarm()
            await expired(kind)
