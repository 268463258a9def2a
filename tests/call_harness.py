"""Shared by the call tests: a fake Twilio on the call's clock and an in-memory store.

Import it as ``from call_harness import ...`` (pytest puts ``tests/`` on the path).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar
from uuid import UUID

import trio

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.messages import HearCaller, ToSupervisor, ToTransport
from switchboard.actors.twilio_transport import TwilioTransport
from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator.agent_versions import spec_version
from switchboard.orchestrator.agents import AgentSpec
from switchboard.orchestrator.call import MakeTransport
from switchboard.orchestrator.store import EventRow

LEAD_MS = 300.0


@dataclass
class MemoryStore:
    """The store methods a call uses, in memory (the real store has its own tests)."""

    events: dict[int, EventRow] = field(default_factory=dict)
    finished: list[dict[str, object]] = field(default_factory=list)
    agent_versions: dict[str, AgentSpec] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    instances: ClassVar[list[MemoryStore]] = []

    def __post_init__(self) -> None:
        MemoryStore.instances.append(self)

    def append_events(self, tenant_id: UUID, session_id: UUID, rows: Sequence[EventRow]) -> None:
        with self.lock:
            for row in rows:
                self.events.setdefault(row.seq, row)

    def keep_agent_version(self, tenant_id: UUID, agent_id: UUID, spec: AgentSpec) -> str:
        version = spec_version(spec)
        with self.lock:
            self.agent_versions.setdefault(version, spec)
        return version

    def finish_session(self, tenant_id: UUID, session_id: UUID, **summary: object) -> None:
        self.finished.append(summary)


class FakeTwilio:
    """Twilio's side of a Media Stream: plays audio on a clock, echoes marks once played."""

    def __init__(self) -> None:
        self.to_server, self._from_test = trio.open_memory_channel[str | None](100)
        self.media_sent_at: list[float] = []
        self.heard: list[tuple[float, float]] = []  # (start, end) of each frame's playout
        self.audio_ahead_s: list[float] = []
        self.marks: list[tuple[str, float]] = []
        self.echoed: list[tuple[str, float]] = []  # (mark, when Twilio echoed it)
        self.clears: list[float] = []
        self.outbound: list[str] = []  # "media", "mark", "clear": what was sent, in order
        self.playout_end = 0.0
        self._cleared = trio.Event()  # set by a clear: pending marks echo at once
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed_at: float | None = None
        self.nursery: trio.Nursery | None = None

    async def receive(self) -> str | bytes | None:
        if self.close_code is not None:
            return None
        return await self._from_test.receive()

    async def send(self, message: str) -> None:
        now = trio.current_time()
        out = wire.parse_outbound(message)
        self.outbound.append(out.__struct_config__.tag)  # type: ignore[arg-type]
        if isinstance(out, wire.OutboundMedia):
            start = max(self.playout_end, now)
            self.playout_end = start + len(out.payload) / 8000
            self.heard.append((start, self.playout_end))
            self.media_sent_at.append(now)
            self.audio_ahead_s.append(self.playout_end - now)
        elif isinstance(out, wire.OutboundMark):
            self.marks.append((out.name, self.playout_end))
            assert self.nursery is not None
            self.nursery.start_soon(self._echo, out.name, self.playout_end, self._cleared)
        elif isinstance(out, wire.Clear):
            # Twilio drops the buffered audio and echoes every pending mark at once.
            self.clears.append(now)
            self.playout_end = now
            self.heard = [(a, min(b, now)) for a, b in self.heard if a < now]
            self._cleared.set()
            self._cleared = trio.Event()

    async def _echo(self, name: str, at: float, cleared: trio.Event) -> None:
        with trio.move_on_at(at):
            await cleared.wait()
        if self.close_code is None:
            self.echoed.append((name, trio.current_time()))
            await self.to_server.send(wire.InboundEncoder("MZ1", "CA1", "AC1").mark(name))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.close_code is None:
            self.close_code, self.closed_at = code, trio.current_time()
            self.close_reason = reason
            await self.to_server.send(None)

    def heard_again_after(self, t: float) -> tuple[float, float]:
        """(end of the last audio heard before ``t``, start of the first heard after it).

        ``t`` is taken 1 ms early: event times are rounded, and audio may start
        at the very instant of the event that caused it.
        """
        t -= 0.001
        before = [end for start, end in self.heard if start < t]
        after = [start for start, _ in self.heard if start >= t]
        return (max(before) if before else 0.0, min(after) if after else math.inf)


def transport_for(ctx: CallContext, twilio: FakeTwilio) -> MakeTransport:
    """A Twilio transport on the fake Twilio, sending at most LEAD_MS ahead."""

    def make(
        inbox: trio.MemoryReceiveChannel[ToTransport],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        hear: HearCaller,
        events: EventSink,
    ) -> TwilioTransport:
        return TwilioTransport(
            ctx,
            socket=twilio,
            stream_sid="MZ1",
            inbox=inbox,
            to_supervisor=to_supervisor,
            hear=hear,
            events=events,
            playout_lead_ms=LEAD_MS,
        )

    return make
