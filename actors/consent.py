"""Recording consent on a call: what the caller is told before the greeting, and when they heard it.

The agent's policy decides (``orchestrator/recording_policy.py``) when the call
starts; the call carries the decision as ``ctx.consent`` (None: the call is not
recorded). Every provider speaks ``ctx.greeting`` (:func:`spoken_greeting`: the
consent line, then the agent's greeting), so the line is said by whichever
provider greets. :class:`ConsentReport` turns the decision and the greeting's
closing mark (the transport's report that the caller has heard it) into the
call's one ``recording.consent`` event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, final

__all__ = ["Consent", "ConsentReport", "spoken_greeting"]


@final
@dataclass(frozen=True, slots=True)
class Consent:
    """The consent decision for one recorded call.

    Attributes:
        announced: the consent line is said before the greeting.
        rule: why (``always``, ``never``, ``auto:all-party``, ``auto:one-party``,
            ``auto:unknown``).
        state: the caller's state code (``"CA"``), or None when unknown.
        line: the agent's consent line.
    """

    announced: bool
    rule: str
    state: str | None
    line: str


def spoken_greeting(greeting: str, consent_line: str | None) -> str:
    """The greeting as said: ``consent_line`` first (when given), then ``greeting``."""
    if not consent_line:
        return greeting
    return f"{consent_line.strip()} {greeting}"


class ConsentReport:
    """Builds the payload of the call's ``recording.consent`` event (at most once).

    Not announced: the event is due at the start. Announced: when the caller has heard
    the greeting (its closing mark came back), or at the end of the call, heard False.
    """

    def __init__(self, consent: Consent | None) -> None:
        self._consent = consent
        self._done = consent is None

    def _payload(self, *, heard: bool, heard_at_ms: float | None) -> dict[str, Any]:
        assert self._consent is not None
        self._done = True
        c = self._consent
        return {
            "announced": c.announced,
            "rule": c.rule,
            "state": c.state,
            "line": c.line if c.announced else None,
            "heard": heard,
            "heard_at_ms": None if heard_at_ms is None else round(heard_at_ms, 1),
        }

    def at_start(self) -> dict[str, Any] | None:
        if self._done or self._consent is None or self._consent.announced:
            return None
        return self._payload(heard=False, heard_at_ms=None)

    def greeting_heard(self, now_ms: float) -> dict[str, Any] | None:
        if self._done:
            return None
        return self._payload(heard=True, heard_at_ms=now_ms)

    def at_end(self) -> dict[str, Any] | None:
        if self._done:
            return None
        return self._payload(heard=False, heard_at_ms=None)
