"""An agent's recording policy (the agent file's ``recording:`` mapping) and the consent rule.

::

    recording:
      enabled: true                    # default false: no audio is stored at all
      announce: auto                   # auto | always | never
      retention_days: 30               # 1..3650; the sweep deletes older recordings
      consent_line: This call is recorded.
      all_party_states: [CA, FL, IL, MD, MA, MT, NH, PA, WA]

The consent rule (the issue's seed rule, after the US all-party-consent
states: California Penal Code 632, Florida Statutes 934.03, Illinois 720 ILCS
5/14-2, Maryland Courts and Judicial Proceedings 10-402, Massachusetts c. 272
s. 99, Montana 45-8-213, New Hampshire RSA 570-A:2, Pennsylvania 18 Pa.C.S.
5704, Washington RCW 9.73.030): with ``announce: auto`` the greeting is
prefixed with ``consent_line`` when the caller's state (Twilio's ``FromState``
or ``CallerState`` on the voice webhook) is one of ``all_party_states``, or
is unknown (browser and ``/v1/realtime`` calls, a number without a state);
``always`` and ``never`` do as they say. :meth:`RecordingPolicy.consent`
decides; the call carries the decision (:class:`~switchboard.actors.consent.Consent`).
:func:`recording_problem` is the one rule book, shared by the dataclass and
the agent-file parser (which adds the file, line and key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, final

from ..actors.consent import Consent

__all__ = [
    "ALL_PARTY_CONSENT_STATES",
    "ANNOUNCE",
    "DEFAULT_CONSENT_LINE",
    "RETENTION_DAYS_RANGE",
    "RecordingPolicy",
    "caller_state",
    "recording_problem",
]

ANNOUNCE: Final = ("auto", "always", "never")
ALL_PARTY_CONSENT_STATES: Final = ("CA", "FL", "IL", "MD", "MA", "MT", "NH", "PA", "WA")
DEFAULT_CONSENT_LINE: Final = "This call is recorded."
RETENTION_DAYS_RANGE: Final = (1, 3650)
MAX_CONSENT_LINE_CHARS: Final = 500
_STATE: Final = re.compile(r"[A-Z]{2}")


def caller_state(value: str | None) -> str | None:
    """A state code as Twilio sends it (``"CA"``, ``" ca "``) -> ``"CA"``; anything that is
    not two letters (empty, a province name, junk) -> None (unknown)."""
    if not value:
        return None
    state = value.strip().upper()
    return state if _STATE.fullmatch(state) else None


def recording_problem(
    *,
    announce: str,
    retention_days: int,
    consent_line: str,
    all_party_states: Sequence[str],
) -> tuple[str, str] | None:
    """``(key, problem)`` for the first setting out of its rule, or None."""
    if announce not in ANNOUNCE:
        return "announce", f"must be one of {', '.join(ANNOUNCE)}, got {announce!r}"
    low, high = RETENTION_DAYS_RANGE
    if isinstance(retention_days, bool) or not isinstance(retention_days, int):
        return "retention_days", f"expected a whole number, got {retention_days!r}"
    if not low <= retention_days <= high:
        return "retention_days", f"must be between {low} and {high} days, got {retention_days}"
    if not consent_line.strip():
        return "consent_line", "must not be empty"
    if len(consent_line) > MAX_CONSENT_LINE_CHARS:
        return "consent_line", f"at most {MAX_CONSENT_LINE_CHARS} characters"
    for state in all_party_states:
        if not (isinstance(state, str) and _STATE.fullmatch(state)):
            return "all_party_states", f"{state!r} is not a two-letter state code such as 'CA'"
    return None


@final
@dataclass(frozen=True, slots=True)
class RecordingPolicy:
    """Whether an agent's calls are recorded, and how consent is announced.

    Construction validates every value and raises ``ValueError`` naming the first one
    out of its rule (:func:`recording_problem`).

    Attributes:
        enabled: record both tracks of every call (False: no audio is stored at all).
        announce: ``auto`` (by the caller's state), ``always`` or ``never``.
        retention_days: days a recording is kept (1..3650) before the sweep deletes it.
        consent_line: said before the greeting when consent is announced.
        all_party_states: state codes where ``auto`` announces (uppercase, two letters).
    """

    enabled: bool = False
    announce: str = "auto"
    retention_days: int = 30
    consent_line: str = DEFAULT_CONSENT_LINE
    all_party_states: tuple[str, ...] = ALL_PARTY_CONSENT_STATES

    def __post_init__(self) -> None:
        problem = recording_problem(
            announce=self.announce,
            retention_days=self.retention_days,
            consent_line=self.consent_line,
            all_party_states=self.all_party_states,
        )
        if problem is not None:
            raise ValueError(f"recording.{problem[0]}: {problem[1]}")

    @property
    def may_announce(self) -> bool:
        """True when some call of this agent may hear :attr:`consent_line`."""
        return self.enabled and self.announce != "never"

    def consent(self, state: str | None) -> Consent:
        """What a caller from ``state`` (None: unknown) hears before the greeting, and why.

        ``rule`` is ``always``, ``never``, ``auto:all-party`` (the state is listed),
        ``auto:one-party`` (it is not) or ``auto:unknown`` (no state).
        """
        state = caller_state(state)
        if self.announce == "always":
            rule, announced = "always", True
        elif self.announce == "never":
            rule, announced = "never", False
        elif state is None:
            rule, announced = "auto:unknown", True
        elif state in self.all_party_states:
            rule, announced = "auto:all-party", True
        else:
            rule, announced = "auto:one-party", False
        return Consent(announced=announced, rule=rule, state=state, line=self.consent_line)

    def to_json(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "announce": self.announce,
            "retention_days": self.retention_days,
            "consent_line": self.consent_line,
            "all_party_states": list(self.all_party_states),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RecordingPolicy:
        """The inverse of :meth:`to_json`; missing keys take the defaults.

        Raises:
            ValueError: a value out of its rule, or not a mapping.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"recording must be a mapping, got {type(data).__name__}")
        return cls(
            enabled=bool(data.get("enabled", False)),
            announce=str(data.get("announce", "auto")),
            retention_days=data.get("retention_days", 30),
            consent_line=str(data.get("consent_line", DEFAULT_CONSENT_LINE)),
            all_party_states=tuple(data.get("all_party_states", ALL_PARTY_CONSENT_STATES)),
        )
