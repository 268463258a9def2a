"""Replay a recorded call: the same ``run_call``, on virtual time, against its recording.

:func:`replay_trace` builds the call as it was (agent, door, caller format,
SIDs, numbers, consent) and runs it through :func:`~..call.run_call` with the
door's real transport, the real supervisor and the real event logger, under
Trio's ``MockClock`` with ``autojump_threshold=0``: whenever every task is
waiting, the clock jumps to the next deadline, so a call's minutes pass in
the time its Python takes. What the recording holds stands in for the outside
world:

* the caller's side: a peer (:mod:`.peers`) sending the recorded frames and
  actions at their offsets and echoing marks as the caller's player did;
* each provider instance: a :class:`~switchboard.actors.providers.recorded.RecordedProvider`
  playing the instance's recorded outputs and events (:mod:`.providers`);
* the tools: their recorded results (:mod:`.tools`);
* the store: in memory, inline (no threads, so nothing runs off the virtual clock).

The result is the replay's event rows, numbered and stamped as the logger does
(``t_ms`` rounded to the microsecond, payloads as JSON), so two replays of one
trace are identical and a replay compares with the recorded events directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import trio
import trio.testing

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.local.transcribed import silence
from switchboard.actors.messages import AudioChunk, HearCaller, ToSupervisor, ToTransport
from switchboard.actors.tape import CallTape

from ..agent_versions import spec_version
from ..agents import AgentSpec
from ..call import Actor, CallResources, MakeTransport, run_call
from ..store import EventRow as StoreRow
from ..trace_file import Trace
from .api import EventRow, Replay, WhatIf
from .peers import ReplayPeer, make_peer
from .providers import RecordedHealth, ReplayProviders
from .recorded_call import RecordedCall, recorded_call
from .runtime import deterministic_scheduling, gc_frozen, quiet_logs, replay_clock
from .tools import replay_tools
from .what_if import changed_agent

__all__ = ["replay_call", "replay_trace"]


AUDIO_AHEAD_MS = 1000.0
AUDIO_JOIN_MS = 200.0
"""How far ahead of its time the caller's audio may be sent, and how much of it goes
in one message (:mod:`.peers`): every provider of a replay is a recording, which
ignores caller audio."""


def replay_trace(trace: Trace, what_if: WhatIf | None = None) -> Replay:
    """Replay ``trace`` (as it was, or against ``what_if``); see the module docstring.

    Raises:
        Unreplayable: the trace cannot be replayed (the message says why).
        ConfigError: a what-if that does not make a valid agent.
    """
    return replay_call(recorded_call(trace), what_if or WhatIf())


def replay_call(call: RecordedCall, what_if: WhatIf) -> Replay:
    """:func:`replay_trace` on a trace already read."""
    agent = changed_agent(call, what_if)
    with deterministic_scheduling(), quiet_logs(), gc_frozen():
        return trio.run(_replay, call, agent, clock=replay_clock())


_HTTP: list[httpx.AsyncClient] = []


def _http() -> httpx.AsyncClient:
    """One HTTP client for every replay of the process: a replay reaches no network, but a
    call needs a client, and making one loads the TLS roots (tens of milliseconds)."""
    if not _HTTP:
        _HTTP.append(httpx.AsyncClient())
    return _HTTP[0]


async def _inline(fn: Callable[..., Any], *args: Any, **_: Any) -> Any:
    """The replay's ``run_sync``: the in-memory store answers at once, on the call's task."""
    await trio.lowlevel.checkpoint()
    return fn(*args)


class _ReplayStore:
    """The store a replayed call writes to: nothing is kept (the logger's ``on_logged``
    collects the events)."""

    def append_events(self, tenant_id: UUID, session_id: UUID, rows: Any) -> None:
        pass

    def keep_agent_version(self, tenant_id: UUID, agent_id: UUID, spec: AgentSpec) -> str:
        return spec_version(spec)

    def finish_session(self, tenant_id: UUID, session_id: UUID, **summary: object) -> None:
        pass


async def _replay(call: RecordedCall, agent: AgentSpec) -> Replay:
    t0 = trio.current_time()
    ctx = CallContext(
        call.session_id,
        call.tenant_id,
        call.agent_id,
        agent,
        t0=t0,
        caller_format=call.caller_format,
        call_sid=call.call_sid,
        stream_sid=call.stream_sid,
        from_number=call.from_number,
        to_number=call.to_number,
        tape=CallTape(),
        consent=call.consent,
    )
    providers = ReplayProviders(call, agent)
    res = CallResources(
        http=_http(),
        store=_ReplayStore(),  # type: ignore[arg-type]
        providers=providers,
        make_tools=replay_tools(call, agent),
        apology=lambda c: _apology(c, call.apology_ms),
        run_sync=_inline,
        health=RecordedHealth(t0, call.cooling_ends, call.agent.failover.cooldown_seconds),
    )
    rows: list[EventRow] = []

    def logged(row: StoreRow) -> None:
        rows.append({"seq": row.seq, "type": row.type, "t_ms": row.t_ms, "payload": row.payload})

    peer = make_peer(call, t0, AUDIO_AHEAD_MS, AUDIO_JOIN_MS)
    # The live call took setup_ms (a busy disk, its journal) before its first event;
    # on virtual time setting up takes none, so the replay waits as long.
    await trio.sleep(call.setup_ms / 1000.0)
    report = await run_call(ctx, _transport(call, ctx, peer), res, on_logged=logged)
    return Replay(
        events=_as_json(rows),
        end_reason=report.end_reason,
        turns_completed=report.turns_completed,
        providers=providers.played,
    )


async def _apology(ctx: CallContext, duration_ms: float) -> AudioChunk:
    """The failover apology: silence as long as the recorded one played."""
    return silence(ctx.caller_format, duration_ms)


def _as_json(rows: list[EventRow]) -> list[EventRow]:
    """The rows as a trace holds them: through JSON (tuples become lists, and so on)."""
    return [json.loads(json.dumps(row, ensure_ascii=False, default=str)) for row in rows]


def _transport(call: RecordedCall, ctx: CallContext, peer: ReplayPeer) -> MakeTransport:
    """The door's real transport actor on ``peer``."""

    def make(
        inbox: trio.MemoryReceiveChannel[ToTransport],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        hear: HearCaller,
        events: EventSink,
    ) -> Actor:
        if call.door == "twilio":
            from switchboard.actors.twilio_transport import TwilioTransport

            return TwilioTransport(
                ctx,
                socket=peer,
                stream_sid=call.stream_sid or "MZ0",
                inbox=inbox,
                to_supervisor=to_supervisor,
                hear=hear,
                events=events,
            )
        if call.door == "browser":
            from switchboard.actors.browser_transport import BrowserTransport

            return BrowserTransport(
                ctx,
                socket=peer,
                inbox=inbox,
                to_supervisor=to_supervisor,
                events=events,
                hear=hear,
            )
        from switchboard.actors.realtime_transport import RealtimeTransport

        return RealtimeTransport(
            ctx, socket=peer, inbox=inbox, to_supervisor=to_supervisor, events=events
        )

    return make
