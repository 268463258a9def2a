"""What the supervisor tells the failover policy: what happened, in the past tense.

Frozen dataclasses, ``match``-friendly. ``at_s`` is always the call's clock in
seconds (``trio.current_time()``): the policy has no clock of its own. Which
supervisor message maps to which input is in :mod:`.policy`'s docstring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import final

from ..messages import FailureKind

__all__ = [
    "CallStarted",
    "CallerFinishedSpeaking",
    "CallerStartedSpeaking",
    "FailoverInput",
    "FailureReported",
    "OutputProduced",
    "ProgressReported",
    "ProviderConnected",
    "ResponseEnded",
    "ResponseRequested",
    "Ticked",
    "ToolCallStarted",
]


def _frozen(mapping: Mapping[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(mapping))


# -- inputs: what happened ------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class CallStarted:
    """The call began. ``cooling_down``: modes to skip -> seconds of cooldown left
    (:meth:`ProviderHealth.cooldowns <.health.ProviderHealth.cooldowns>`)."""

    at_s: float
    cooling_down: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cooling_down", _frozen(self.cooling_down))


@final
@dataclass(frozen=True, slots=True)
class ProviderConnected:
    """The current provider's session is established (``ProviderReady``)."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class OutputProduced:
    """The current provider produced output the caller will hear (agent audio)."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class ProgressReported:
    """The current provider says it is still working on what it owes (``ProviderWorking``):
    not output, but not a stall either, for at most ``progress_limit_ms``."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class ResponseEnded:
    """A response ended (``ResponseDone``); ``greeting``: it was the greeting;
    ``interrupted``: the caller barged in before it finished."""

    at_s: float
    greeting: bool = False
    interrupted: bool = False


@final
@dataclass(frozen=True, slots=True)
class CallerStartedSpeaking:
    """Voice activity on the caller's side (``SpeechStarted``)."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class CallerFinishedSpeaking:
    """The caller's utterance ended (``SpeechStopped``): an answer is now owed."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class ResponseRequested:
    """The supervisor asked the provider for a response (a tool result was sent)."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    """The provider asked for a tool call: it waits for us, not we for it (no stall)."""

    at_s: float


@final
@dataclass(frozen=True, slots=True)
class FailureReported:
    """A provider failed (``ProviderFailed``).

    ``attempt`` is the attempt the failure belongs to (from the decision that
    started it); a failure of an attempt already replaced is stale and
    ignored. None means the current attempt. ``cooling_down`` as in
    :class:`CallStarted`, read after recording this failure in the health record.
    """

    at_s: float
    kind: FailureKind
    detail: str = ""
    attempt: int | None = None
    cooling_down: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cooling_down", _frozen(self.cooling_down))


@final
@dataclass(frozen=True, slots=True)
class Ticked:
    """Time passed: the supervisor's watchdog reached :attr:`FailoverPolicy.deadline_s`.

    ``cooling_down`` as in :class:`CallStarted` (a tick may turn into a switch).
    """

    at_s: float
    cooling_down: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cooling_down", _frozen(self.cooling_down))


FailoverInput = (
    CallStarted
    | ProviderConnected
    | OutputProduced
    | ProgressReported
    | ResponseEnded
    | CallerStartedSpeaking
    | CallerFinishedSpeaking
    | ResponseRequested
    | ToolCallStarted
    | FailureReported
    | Ticked
)
