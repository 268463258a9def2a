"""A call trace read for replay: who the call was, what the caller did and when, what
each provider instance said, what each tool answered.

Everything comes from the trace (:mod:`..trace_file`): the agent snapshot, the
``session.start`` event (door, caller format, SIDs, numbers, chain), the tape
(caller audio as received, provider instance records) and the events (marks
the caller's side echoed, DTMF, typed text, how the call ended, tool results,
transfers, the consent decision). Times are ``t_ms`` on the call's clock.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from switchboard.actors.consent import Consent
from switchboard.actors.context import AudioFormat
from switchboard.actors.instance_record import InstanceStarted, unpack
from switchboard.actors.providers.recorded import TimedEntry
from switchboard.codecs.recording_format import Kind

from ..agents import AgentSpec
from ..trace_file import Trace
from .api import EventRow, Unreplayable

__all__ = ["RecordedCall", "RecordedInstance", "RecordedTool", "recorded_call"]

DOORS = ("twilio", "browser", "realtime")

CALLER_ENDS = {
    "caller hung up": "stop",
    "stream closed": "close",
    "client closed the connection": "close",
}
"""End reasons that mean the caller's side ended the call, and how the replayed caller
does it: ``stop`` (Twilio's ``stop`` message) or ``close`` (the WebSocket closes)."""


@dataclass
class RecordedInstance:
    """One provider instance: ``source`` ``<mode>#<generation>``, started at ``start_ms``
    with ``greet``/``respond_now``, and what it did after (offsets from its start)."""

    source: str
    mode: str
    generation: int
    start_ms: float
    greet: bool
    respond_now: bool
    entries: list[TimedEntry] = field(default_factory=list)


@dataclass(frozen=True)
class RecordedTool:
    """A tool call's recorded answer, ``delay_ms`` after the call was made."""

    delay_ms: float
    ok: bool
    output: str
    after: dict[str, str] | None
    acked_after_ms: float | None = None
    """When the tool was acknowledged (``tool:ack``), ms after the call; None: it was not."""
    error: str | None = None
    detail: dict[str, Any] | None = None


@dataclass
class RecordedCall:
    """Everything a replay needs from a trace (see the module docstring)."""

    door: str
    session_id: UUID
    tenant_id: UUID
    agent_id: UUID
    agent: AgentSpec
    caller_format: AudioFormat
    call_sid: str | None
    stream_sid: str | None
    from_number: str | None
    to_number: str | None
    consent: Consent | None
    chain: list[str]
    skipped: dict[str, str]
    cooling_ends: dict[str, float]
    caller_audio: list[tuple[float, bytes]]
    caller_actions: list[tuple[float, str, dict[str, Any]]]
    hang_up: tuple[float, str] | None
    mark_echoes: dict[str, float]
    clears: list[float]
    instances: dict[str, RecordedInstance]
    tools: dict[str, RecordedTool]
    transfers: list[dict[str, Any]]
    apology_ms: float
    events: list[EventRow]
    duration_ms: float
    setup_ms: float = 0.0
    """When ``session.start`` came on the call's clock: the time the call took to set up
    (its journal, its recorder) before its first event. The replay waits as long."""


def recorded_call(trace: Trace) -> RecordedCall:
    """Read ``trace`` for replay.

    Raises:
        Unreplayable: no ``session.start``, no agent snapshot, no tape (the call was not
            recorded, or its audio was left out), no provider instance records (recorded
            before replay existed), an unknown door, or a broken instance record.
    """
    events = trace.events
    start = _first(events, "session.start")
    if start is None:
        raise Unreplayable("the trace has no session.start event")
    payload = start["payload"]
    door = str(trace.manifest.get("door") or "")
    if door not in DOORS:
        raise Unreplayable(f"unknown door {door!r} (known: {', '.join(DOORS)})")
    if trace.agent is None:
        raise Unreplayable("the trace lacks the agent the call ran on (agent.json)")
    if trace.records is None:
        raise Unreplayable(
            f"the trace has no tape (audio: {trace.manifest.get('audio')}): only recorded"
            " calls exported with their audio can be replayed"
        )
    try:
        agent = AgentSpec.from_json(trace.agent)
    except (KeyError, TypeError, ValueError) as exc:
        raise Unreplayable(f"the trace's agent.json is not an agent: {exc}") from exc
    fmt = payload.get("caller_format") or {}
    if fmt.get("encoding") not in ("pcmu", "pcm16") or not isinstance(fmt.get("sample_rate"), int):
        raise Unreplayable(f"session.start has no caller format this build knows: {fmt!r}")
    caller_format = AudioFormat(fmt["encoding"], fmt["sample_rate"])
    try:
        ids = (
            UUID(str(trace.manifest["session_id"])),
            UUID(str(trace.manifest["tenant"]["id"])),
            UUID(str(payload.get("agent_id") or trace.manifest["agent"]["id"])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise Unreplayable(f"the trace does not say who the call was: {exc}") from exc
    instances = _instances(trace)
    if not instances:
        raise Unreplayable(
            "the trace has no provider instance records (recorded before replay existed):"
            " nothing to play the provider's side from"
        )
    caller_audio = [(r.t_ms, r.data) for r in trace.records if r.kind is Kind.CALLER_AUDIO]
    end = _first(events, "session.end")
    return RecordedCall(
        door=door,
        session_id=ids[0],
        tenant_id=ids[1],
        agent_id=ids[2],
        agent=agent,
        caller_format=caller_format,
        call_sid=payload.get("call_sid"),
        stream_sid=payload.get("stream_sid"),
        from_number=payload.get("from_number"),
        to_number=payload.get("to_number"),
        consent=_consent(events),
        setup_ms=max(0.0, float(start["t_ms"])),
        chain=[str(m) for m in payload.get("chain") or []],
        skipped={
            str(e["payload"].get("provider")): str(e["payload"].get("reason"))
            for e in events
            if e["type"] == "provider.skipped"
        },
        cooling_ends=_cooling_ends(events),
        caller_audio=caller_audio,
        caller_actions=_caller_actions(events),
        hang_up=_hang_up(events),
        mark_echoes={
            str(e["payload"].get("name")): float(e["t_ms"])
            for e in events
            if e["type"] == "playback.marked"
        },
        clears=[r.t_ms for r in trace.records if r.kind is Kind.AGENT_CLEARED],
        instances=instances,
        tools=_tools(events),
        transfers=[
            e["payload"] for e in events if e["type"] == "transfer" and _deferred_transfer(e)
        ],
        apology_ms=_apology_ms(events),
        events=events,
        duration_ms=float(end["payload"].get("duration_ms") or end["t_ms"]) if end else 0.0,
    )


def _first(events: list[EventRow], type_: str) -> EventRow | None:
    return next((e for e in events if e["type"] == type_), None)


def _instances(trace: Trace) -> dict[str, RecordedInstance]:
    assert trace.records is not None
    instances: dict[str, RecordedInstance] = {}
    for number, record in enumerate(trace.records):
        if record.kind is not Kind.PROVIDER_OUTPUT:
            continue
        try:
            source, entry = unpack(record.data)
        except ValueError as exc:
            raise Unreplayable(f"tape record {number + 1}: {exc}") from exc
        if isinstance(entry, InstanceStarted):
            mode, _, generation = source.rpartition("#")
            if not mode or not generation.isdigit():
                raise Unreplayable(f"tape record {number + 1}: bad instance name {source!r}")
            instances[source] = RecordedInstance(
                source, mode, int(generation), record.t_ms, entry.greet, entry.respond_now
            )
            continue
        instance = instances.get(source)
        if instance is None:
            raise Unreplayable(f"tape record {number + 1}: {source} speaks before it started")
        instance.entries.append(TimedEntry(max(0.0, record.t_ms - instance.start_ms), entry))
    return instances


_COOLING = re.compile(r"cooling down for ([0-9]+(?:\.[0-9]+)?) s more")


def _cooling_ends(events: list[EventRow]) -> dict[str, float]:
    """When each mode the call found cooling down (another call's failure: the server's
    provider health, not the call's own) could be tried again, ``t_ms`` on the call's
    clock, from its first ``failover.suppressed`` event (``reason`` ``cooling_down``): its
    ``remaining_ms``, or in traces made before that field, the seconds its ``detail``
    gives, to 0.1 s."""
    ends: dict[str, float] = {}
    for e in events:
        p = e["payload"]
        if e["type"] != "failover.suppressed" or p.get("reason") != "cooling_down":
            continue
        mode = str(p.get("provider"))
        remaining_ms = p.get("remaining_ms")
        if not isinstance(remaining_ms, int | float):
            found = _COOLING.search(str(p.get("detail") or ""))
            remaining_ms = float(found.group(1)) * 1000.0 if found is not None else None
        if remaining_ms is not None and mode not in ends:
            ends[mode] = float(e["t_ms"]) + float(remaining_ms)
    return ends


def _consent(events: list[EventRow]) -> Consent | None:
    event = _first(events, "recording.consent")
    if event is None:
        return None
    p = event["payload"]
    return Consent(
        bool(p.get("announced")), str(p.get("rule")), p.get("state"), p.get("line") or ""
    )


CALLER_ACTIONS = {
    "dtmf": ("dtmf", ("digit",)),
    "caller.text": ("text", ("text",)),
    "realtime.response.create": ("response.create", ()),
    "realtime.response.cancel": ("response.cancel", ()),
    "realtime.session.update": ("session.update", ("format", "ignored")),
    "realtime.item.create": (
        "conversation.item.create",
        ("item_id", "kind", "role", "text", "typed"),
    ),
}


def _caller_actions(events: list[EventRow]) -> list[tuple[float, str, dict[str, Any]]]:
    """What the caller's side did besides audio, from the events it caused."""
    actions = []
    for e in events:
        known = CALLER_ACTIONS.get(e["type"])
        if known is not None:
            action, keys = known
            actions.append((float(e["t_ms"]), action, {k: e["payload"].get(k) for k in keys}))
    return actions


def _hang_up(events: list[EventRow]) -> tuple[float, str] | None:
    """When and how the caller's side ended the call, or None (the call ended it)."""
    if _first(events, "call.ending") is not None:
        return None
    end = _first(events, "session.end")
    report = _first(events, "supervisor.report")
    if end is None:
        return None
    how = CALLER_ENDS.get(str(end["payload"].get("reason")))
    if how is None:
        return None
    return float((report or end)["t_ms"]), how


def _tools(events: list[EventRow]) -> dict[str, RecordedTool]:
    called: dict[str, float] = {}
    acked: dict[str, float] = {}
    tools: dict[str, RecordedTool] = {}
    for e in events:
        p = e["payload"]
        if e["type"] == "tool:call":
            called[str(p.get("call_id"))] = float(e["t_ms"])
        elif e["type"] == "tool:ack":
            call_id = str(p.get("call_id"))
            acked[call_id] = max(0.0, float(e["t_ms"]) - called.get(call_id, float(e["t_ms"])))
        elif e["type"] == "tool:result":
            call_id = str(p.get("call_id"))
            delay = float(e["t_ms"]) - called.get(call_id, float(e["t_ms"]))
            after = p.get("after")
            detail = p.get("detail")
            tools[call_id] = RecordedTool(
                max(0.0, delay),
                bool(p.get("ok")),
                str(p.get("output")),
                dict(after) if isinstance(after, dict) else None,
                acked.get(call_id),
                None if p.get("error") is None else str(p["error"]),
                dict(detail) if isinstance(detail, dict) else None,
            )
    return tools


def _deferred_transfer(event: EventRow) -> bool:
    """A ``transfer`` event of a deferred transfer's redirect (not one refused inside the
    tool call because the call cannot be redirected at all)."""
    return event["payload"].get("reason") not in ("no_credentials", "not_a_phone_call")


def _apology_ms(events: list[EventRow]) -> float:
    """How long the failover apology played (from giving up to its closing mark)."""
    gave_up = _first(events, "failover.exhausted")
    heard = next(
        (
            e
            for e in events
            if e["type"] == "playback.marked" and e["payload"].get("name") == "response:apology"
        ),
        None,
    )
    if gave_up is None or heard is None:
        return 2000.0
    return max(20.0, float(heard["t_ms"]) - float(gave_up["t_ms"]))


def by_mode(instances: dict[str, RecordedInstance]) -> dict[str, list[RecordedInstance]]:
    """The recorded instances of each mode, in the order they started."""
    modes: dict[str, list[RecordedInstance]] = defaultdict(list)
    for instance in sorted(instances.values(), key=lambda i: i.generation):
        modes[instance.mode].append(instance)
    return modes
