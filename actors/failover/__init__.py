"""Failover: the policy of one call, the process-wide provider health, the settings.

- :mod:`.policy`: :class:`FailoverPolicy`, a pure state machine (inputs in the
  past tense, decisions as imperatives), driven by the supervisor.
- :mod:`.health`: :class:`ProviderHealth`, circuit breakers per provider mode
  shared by every call of the process.
- :mod:`.settings`: :class:`FailoverSettings`, an agent's ``failover:`` mapping.

None of it does I/O, awaits, or reads a clock of its own.
"""

from .health import CircuitState, ModeHealth, ProviderHealth
from .policy import (
    CallerFinishedSpeaking,
    CallerStartedSpeaking,
    CallStarted,
    Connect,
    Decision,
    DoNothing,
    FailoverInput,
    FailoverPolicy,
    Failure,
    FailureReported,
    GiveUp,
    OutputProduced,
    ProviderConnected,
    Reconnect,
    ResponseEnded,
    ResponseRequested,
    Suppression,
    SuppressionReason,
    SwitchTo,
    Ticked,
    ToolCallStarted,
)
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
