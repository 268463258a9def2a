"""How many unusable frames a door takes from its peer before it hangs up on it.

Every call door reads frames from a peer it does not control. A frame that
cannot be understood is logged (an ``error`` event) and skipped, so one bad
frame never ends a call; but a peer that sends nothing else is broken or
hostile, and each of its frames would cost an event row. The budget, the
same on every door:

- a frame longer than the door's cap (the codec says ``too_large``) ends the
  call at once with close code 1009, "message too big" (RFC 6455, section
  7.4.1);
- :data:`MAX_BAD_IN_A_ROW` unusable frames in a row, or
  :data:`MAX_BAD_PER_CALL` in the whole call, end it with 1008, "policy
  violation".

Pure bookkeeping: the transport asks :meth:`FrameBudget.bad` after each
unusable frame and :meth:`FrameBudget.good` after each usable one, and closes
when told to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_BAD_IN_A_ROW: Final = 20
MAX_BAD_PER_CALL: Final = 100
MESSAGE_TOO_BIG: Final = 1009
POLICY_VIOLATION: Final = 1008


@dataclass(frozen=True, slots=True)
class HangUp:
    """Close with ``code`` and ``reason`` (short, for the close frame and ``session.end``);
    ``detail`` says what was counted."""

    code: int
    reason: str
    detail: str


class FrameBudget:
    """The count of one call's unusable frames (see the module docstring)."""

    def __init__(
        self, *, in_a_row: int = MAX_BAD_IN_A_ROW, per_call: int = MAX_BAD_PER_CALL
    ) -> None:
        self._limit_in_a_row = in_a_row
        self._limit_per_call = per_call
        self.in_a_row = 0
        self.total = 0

    def good(self) -> None:
        self.in_a_row = 0

    def bad(self, reason: str, detail: str = "") -> HangUp | None:
        """Count one unusable frame (``reason`` as the codec named it); a :class:`HangUp`
        if the call must end."""
        self.in_a_row += 1
        self.total += 1
        if reason == "too_large":
            return HangUp(MESSAGE_TOO_BIG, "frame too large", detail or "a frame over the cap")
        if self.in_a_row >= self._limit_in_a_row:
            return HangUp(
                POLICY_VIOLATION,
                "too many malformed frames",
                f"{self.in_a_row} unusable frames in a row",
            )
        if self.total >= self._limit_per_call:
            return HangUp(
                POLICY_VIOLATION,
                "too many malformed frames",
                f"{self.total} unusable frames in the call",
            )
        return None
