"""What the failover policy tells the supervisor to do: imperatives.

Frozen dataclasses, ``match``-friendly. A decision that answers a failure
carries it (:class:`Failure`, the ``provider.failed`` event) and the switches
it did not make with their reasons (:class:`Suppression`, the
``failover.suppressed`` events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, final

from ..messages import FailureKind

__all__ = [
    "Connect",
    "Decision",
    "DoNothing",
    "Failure",
    "GiveUp",
    "Reconnect",
    "Suppression",
    "SuppressionReason",
    "SwitchTo",
]

SuppressionReason = Literal[
    "locked", "max_switches", "cooling_down", "end_of_chain", "reconnect_used"
]
"""Why a switch (or the reconnect) was not made:

- ``locked``: ``lock_after_turns`` turns have completed;
- ``max_switches``: ``max_switches_per_call`` switches were made already;
- ``cooling_down``: the link's mode failed recently (``link`` and ``mode`` say which);
- ``end_of_chain``: no usable link is left after the current one;
- ``reconnect_used``: the call's one reconnect was spent already.
"""


@final
@dataclass(frozen=True, slots=True)
class Suppression:
    """A switch not made, and why (one ``failover.suppressed`` event each);
    ``remaining_ms``: for ``cooling_down``, how long the link still cools down."""

    reason: SuppressionReason
    detail: str
    link: int | None = None
    mode: str | None = None
    remaining_ms: float | None = None


@final
@dataclass(frozen=True, slots=True)
class Failure:
    """The failure a decision answers (the ``provider.failed`` event).

    ``link``/``mode``/``attempt``: the provider that failed; ``turn``: turns
    completed when it failed; ``at_s``: when (the call's clock, seconds).
    """

    kind: FailureKind
    detail: str
    link: int
    mode: str
    attempt: int
    turn: int
    at_s: float


@final
@dataclass(frozen=True, slots=True)
class Connect:
    """Start the call's first provider: chain link ``link`` (``mode``), which greets.

    ``suppressed``: links skipped because they are cooling down.
    """

    link: int
    mode: str
    attempt: int
    greet: bool = True
    suppressed: tuple[Suppression, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class SwitchTo:
    """Cancel attempt ``stop_attempt``; start chain link ``link`` (``mode``) with the
    conversation so far as attempt ``attempt``.

    ``greet``: the greeting has not been heard yet, the new provider says it;
    ``respond_now``: an answer was owed or under way, the new provider gives it
    at once. ``suppressed``: links skipped on the way (cooling down).
    """

    link: int
    mode: str
    attempt: int
    stop_attempt: int
    greet: bool
    respond_now: bool
    failure: Failure
    suppressed: tuple[Suppression, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class Reconnect:
    """Cancel attempt ``stop_attempt``; start the same link again (the call's one
    reconnect) as attempt ``attempt``, with the conversation so far.

    ``greet``/``respond_now`` as in :class:`SwitchTo`; ``suppressed`` says why
    this is not a switch.
    """

    link: int
    mode: str
    attempt: int
    stop_attempt: int
    greet: bool
    respond_now: bool
    failure: Failure
    suppressed: tuple[Suppression, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class GiveUp:
    """Cancel attempt ``stop_attempt``; play the apology, then transfer the caller to
    ``transfer_to`` or, when None, end the call (the ``failover.exhausted`` event).

    ``suppressed`` says why neither a switch nor a reconnect was made.
    """

    transfer_to: str | None
    stop_attempt: int
    failure: Failure
    suppressed: tuple[Suppression, ...] = ()


@final
@dataclass(frozen=True, slots=True)
class DoNothing:
    """Carry on. ``failure`` is set when this answers a failure that needs nothing
    (stale, or the call already gave up), with ``why``."""

    failure: Failure | None = None
    why: str = ""


Decision = Connect | SwitchTo | Reconnect | GiveUp | DoNothing
