"""An agent's failover settings (the agent file's ``failover:`` mapping).

Every value is a whole number; the units are in the names. The defaults come
from the budgets in DESIGN.md ("callers notice a hang after about 2 s") and
from how fast healthy providers answer; each is justified on
:class:`FailoverSettings`. :func:`failover_setting_problem` is the one rule
book, shared by the dataclass and the agent-file parser (which adds the file,
line and key to the message).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final, final

__all__ = ["FAILOVER_SETTING_RANGES", "FailoverSettings", "failover_setting_problem"]

FAILOVER_SETTING_RANGES: Final[Mapping[str, tuple[int, int]]] = {
    "stall_timeout_ms": (100, 60_000),
    "audio_gap_timeout_ms": (100, 60_000),
    "connect_timeout_ms": (100, 60_000),
    "progress_limit_ms": (100, 60_000),
    "lock_after_turns": (0, 1_000),
    "cooldown_seconds": (0, 86_400),
    "max_switches_per_call": (0, 100),
}
"""Each setting's allowed range, inclusive (the order of the agent file's keys)."""


@final
@dataclass(frozen=True, slots=True)
class FailoverSettings:
    """When the failover supervisor declares a provider failed, and how far it goes.

    Construction validates every value (:data:`FAILOVER_SETTING_RANGES`) and
    raises ``ValueError`` naming the first one out of range.

    Attributes:
        stall_timeout_ms: a provider that produced no output this long after the
            caller finished speaking, after a response was requested (a tool
            result sent, a greeting due) or after its session opened with an
            answer owed, has stalled. Default 2000 ms: DESIGN.md's budget says
            callers notice a hang after about 2 s, while a healthy realtime
            model starts answering within about 0.5-1 s of the end of speech
            and a cascaded pipeline (final transcript, first LLM tokens, first
            synthesized audio) within about 1.5 s. Waiting 2 s keeps false
            switches rare; the switch itself then adds a few hundred ms.
        audio_gap_timeout_ms: a gap this long between two pieces of output in
            the middle of a response is a stall. Default 1500 ms: providers
            stream a response faster than real time, so once audio flows a
            healthy one never pauses for long (a cascaded pipeline's longest
            pause is one sentence's synthesis, a few hundred ms); the caller is
            usually still hearing earlier audio, so acting sooner than the
            stall timeout keeps the silence they hear short.
        connect_timeout_ms: no session established within this long (WebSocket
            and TLS handshake, the provider's session acknowledgement) is a
            failure of kind ``connect_timeout``. Default 3000 ms: a healthy
            handshake takes a few hundred ms and rarely 1 s; three times that
            avoids switching on a slow but working provider, and a failure of
            the first link costs the caller at most this long before the next
            link greets them.
        progress_limit_ms: a provider that reports progress instead of output
            (``ProviderWorking``: the local provider while its answer waits on
            recognition or synthesis in the shared speech workers) keeps the
            stall and gap timeouts from firing, but only up to this long after
            the answer became due (or after its last output); then it has
            stalled. Default 12000 ms: six times the stall timeout. At capacity
            (2 calls per core) the local provider's answers queue about 1.5 s;
            on a CPU-starved machine (2 cores, four busy processes besides the
            server) one utterance sent at once took up to 6 s to recognize,
            and a worker that is really hung is killed by its job timeout
            (20 s) anyway; so a provider that really is working is not
            switched, while one that is hung but still claims progress costs
            the caller 12 s, not a whole call.
        lock_after_turns: once this many turns have completed (an agent answer
            to a caller utterance that finished; the greeting does not count),
            the supervisor no longer switches provider: one reconnect of the
            same provider, then the apology. Default 3 (DESIGN.md): by then the
            conversation has a voice and a context a new provider would break.
            0 never switches.
        cooldown_seconds: a provider mode that failed this recently is skipped
            by new calls and by switches; after it, one call probes it again
            (the circuit breaker of :mod:`.health`). Default 30 s: provider
            incidents last minutes, so retrying on every call would cost each
            caller the failure again, while a failed probe costs one caller a
            few seconds; 30 s is at most two such callers a minute per process,
            and a brief blip keeps a provider out for only half a minute.
            0 turns the cooldown off.
        max_switches_per_call: switches allowed in one call. Default 3: enough
            to walk a four-link chain (openai-realtime -> gemini-live ->
            cascaded -> local) once; more would only ping-pong between
            failing providers while the caller waits. 0 never switches.
    """

    stall_timeout_ms: int = 2000
    audio_gap_timeout_ms: int = 1500
    connect_timeout_ms: int = 3000
    progress_limit_ms: int = 12000
    lock_after_turns: int = 3
    cooldown_seconds: int = 30
    max_switches_per_call: int = 3

    def __post_init__(self) -> None:
        for name, value in self.to_json().items():
            problem = failover_setting_problem(name, value)
            if problem is not None:
                raise ValueError(problem)

    @property
    def stall_timeout_s(self) -> float:
        return self.stall_timeout_ms / 1000.0

    @property
    def audio_gap_timeout_s(self) -> float:
        return self.audio_gap_timeout_ms / 1000.0

    @property
    def connect_timeout_s(self) -> float:
        return self.connect_timeout_ms / 1000.0

    def to_json(self) -> dict[str, int]:
        """The settings as JSON data, every key present; :meth:`from_json` inverts it."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FailoverSettings:
        """Settings from JSON data; missing keys take their defaults.

        Raises:
            ValueError: an unknown key, or a value that is not a whole number in range.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown failover settings: {', '.join(unknown)}")
        return cls(**data)


def failover_setting_problem(name: str, value: object) -> str | None:
    """What is wrong with failover setting ``name: value``, or None.

    The rules: ``name`` is one of :data:`FAILOVER_SETTING_RANGES`, ``value`` a
    whole number (not a boolean) within that setting's inclusive range.
    """
    if name not in FAILOVER_SETTING_RANGES:
        known = ", ".join(FAILOVER_SETTING_RANGES)
        return f"unknown failover setting {name!r} (known: {known})"
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{name} must be a whole number, got {type(value).__name__}"
    low, high = FAILOVER_SETTING_RANGES[name]
    if not low <= value <= high:
        return f"{name} must be between {low} and {high}, got {value}"
    return None
