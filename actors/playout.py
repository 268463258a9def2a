"""How far ahead agent audio is sent to the caller's player, and how often it is topped up.

The transports send agent audio ahead of real time, by at most the playout lead
(``PLAYOUT_LEAD_MS``, 300 ms by default), so a barge-in's ``clear`` has little to
discard and the player's marks say what was heard. They top the player's buffer
up in batches: once it has fallen :func:`top_up_s` below the lead, they send
what brings it back to the lead. Sending one 20 ms frame whenever one falls
due would wake the call's player task 50 times a second of agent speech; a top
up every 100 ms wakes it 10 times, for the same audio in the same order, with
the caller's buffer never below the lead less 100 ms.
"""

from __future__ import annotations

__all__ = ["TOP_UP_MS", "top_up_s"]

TOP_UP_MS = 100.0
"""How far the caller's buffer falls below the lead before it is topped up (at most)."""


def top_up_s(lead_ms: float) -> float:
    """The top-up step for a playout lead of ``lead_ms``, in seconds: :data:`TOP_UP_MS`,
    or a third of the lead when that is shorter (a short lead is kept nearly full)."""
    return min(TOP_UP_MS, lead_ms / 3.0) / 1000.0
