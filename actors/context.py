"""What every actor of one call knows: who the call is, its clock, and where events go."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import trio

from switchboard.orchestrator.agents import AgentSpec

from .consent import Consent, spoken_greeting
from .messages import CallEvent, Encoding
from .sockets import close_reason
from .tape import CallTape


@dataclass(frozen=True)
class AudioFormat:
    """The caller side's audio format (Twilio: G.711 mu-law at 8000 Hz)."""

    encoding: Encoding
    sample_rate: int


PHONE_AUDIO = AudioFormat("pcmu", 8000)


class CallFault:
    """What crashed the call, if anything: the first exception an actor raised.

    ``run_call`` records an actor's exception here before it cancels the other
    actors, so the transport, closing the socket as it is cancelled, closes with
    1011 and the cause instead of 1000 "call ended".
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def record(self, exc: BaseException) -> None:
        """Keep ``exc`` (the first leaf of an exception group) unless a fault is already kept."""
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        if self.error is None:
            self.error = exc

    @property
    def reason(self) -> str | None:
        """``"error: <class>: <message>"``, or None when nothing crashed."""
        if self.error is None:
            return None
        message = str(self.error).strip()
        name = type(self.error).__name__
        return f"error: {name}: {message}" if message else f"error: {name}"

    def close_frame(self) -> tuple[int, str]:
        """The close code and reason for the caller's socket: 1011 and the cause after a crash
        (RFC 6455 section 7.4.1, "unexpected condition"), else 1000 "call ended"."""
        reason = self.reason
        if reason is None:
            return 1000, "call ended"
        return 1011, close_reason(reason)


@dataclass(frozen=True)
class CallContext:
    """The identity and settings of one call, fixed when it starts.

    ``t0`` is ``trio.current_time()`` (seconds) at the call's start; every
    actor measures ``t_ms`` from it.
    """

    session_id: UUID
    tenant_id: UUID
    agent_id: UUID
    agent: AgentSpec
    t0: float
    caller_format: AudioFormat = PHONE_AUDIO
    call_sid: str | None = None
    stream_sid: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    fault: CallFault = field(default_factory=CallFault, compare=False)
    tape: CallTape = field(default_factory=CallTape, compare=False)
    """Where the call's recording is taken (:mod:`.tape`); the base tape keeps nothing."""
    consent: Consent | None = None
    """The recording consent decision (:mod:`.consent`); None: the call is not recorded."""

    @property
    def greeting(self) -> str:
        """What the agent says first: the consent line when it is announced, then the
        agent's greeting. Every provider greets with this."""
        consent = self.consent
        line = consent.line if consent is not None and consent.announced else None
        return spoken_greeting(self.agent.greeting, line)

    def now_ms(self) -> float:
        """Milliseconds since the call started, on the call's (monotonic) clock."""
        return (trio.current_time() - self.t0) * 1000.0


class EventSink:
    """An actor's handle on the event log: ``await sink.emit("type", key=value, ...)``.

    Each actor gets its own sink (a clone of the logger's channel) and closes
    it when it ends; the logger finishes once every sink is closed.
    """

    def __init__(self, ctx: CallContext, channel: trio.MemorySendChannel[CallEvent]) -> None:
        self._ctx = ctx
        self._channel = channel

    async def emit(self, type_: str, **payload: Any) -> CallEvent:
        """Log an event now; returns it (with its ``t_ms``)."""
        event = CallEvent(type_, self._ctx.now_ms(), payload)
        await self._channel.send(event)
        return event

    @property
    def ctx(self) -> CallContext:
        return self._ctx

    @property
    def channel(self) -> trio.MemorySendChannel[CallEvent]:
        return self._channel

    def clone(self) -> EventSink:
        return EventSink(self._ctx, self._channel.clone())

    async def aclose(self) -> None:
        await self._channel.aclose()
