"""Failover: the policy of one call, the process-wide provider health, the settings.

- :mod:`.policy`: :class:`FailoverPolicy`, a pure state machine driven by the
  supervisor, with its inputs (:mod:`.inputs`, past tense) and decisions
  (:mod:`.decisions`, imperatives).
- :mod:`.health`: :class:`ProviderHealth`, circuit breakers per provider mode
  shared by every call of the process.
- :mod:`.settings`: :class:`FailoverSettings`, an agent's ``failover:`` mapping.

None of it does I/O, awaits, or reads a clock of its own.
"""

from .decisions import (
    Connect,
    Decision,
    DoNothing,
    Failure,
    GiveUp,
    Reconnect,
    Suppression,
    SuppressionReason,
    SwitchTo,
)
from .health import CircuitState, ModeHealth, ProviderHealth
from .inputs import (
    CallerFinishedSpeaking,
    CallerStartedSpeaking,
    CallStarted,
    FailoverInput,
    FailureReported,
    OutputProduced,
    ProgressReported,
    ProviderConnected,
    ResponseEnded,
    ResponseRequested,
    Ticked,
    ToolCallStarted,
)
from .policy import FailoverPolicy
from .settings import FAILOVER_SETTING_RANGES, FailoverSettings, failover_setting_problem

__all__ = [
    "FAILOVER_SETTING_RANGES",
    "CallStarted",
    "CallerFinishedSpeaking",
    "CallerStartedSpeaking",
    "CircuitState",
    "Connect",
    "Decision",
    "DoNothing",
    "FailoverInput",
    "FailoverPolicy",
    "FailoverSettings",
    "Failure",
    "FailureReported",
    "GiveUp",
    "ModeHealth",
    "OutputProduced",
    "ProgressReported",
    "ProviderConnected",
    "ProviderHealth",
    "Reconnect",
    "ResponseEnded",
    "ResponseRequested",
    "Suppression",
    "SuppressionReason",
    "SwitchTo",
    "Ticked",
    "ToolCallStarted",
    "failover_setting_problem",
]
