"""``run_call``: one call as a Trio nursery of actors wired by memory channels.

    transport --caller audio, marks, hang-up--> supervisor --caller audio--> provider
        ^                                          |  ^                          |
        +------- agent audio, marks, end ----------+  +--- audio, transcripts ---+
                                                   |         tool calls, done
                                        tool calls v  ^ results
                                           tool executor
    every actor --events--> event logger --batches--> PostgreSQL

``run_call`` opens every channel; each receive end has one owner; every actor
closes what it owns when it ends, so the call winds down without flags: the
transport reports the hang-up, the supervisor stops the provider and closes
its commands to the transport and the tools, and the logger writes what is
left once the last event sink is closed. Channels are bounded (about a second
of 20 ms frames); the logger's is large and never waits on the database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Protocol
from uuid import UUID

import httpx
import structlog
import trio

from switchboard.actors.context import CallContext, EventSink
from switchboard.actors.event_logger import EventLogger, OnLogged, RunSync
from switchboard.actors.failover.health import ProviderHealth
from switchboard.actors.failover.metrics import FailoverMetrics
from switchboard.actors.local.assets import AssetRegistry
from switchboard.actors.messages import (
    AudioChunk,
    CallEvent,
    HearCaller,
    ToSupervisor,
    ToTools,
    ToTransport,
)
from switchboard.actors.provider_slot import ProviderStart
from switchboard.actors.providers import (
    Endpoints,
    ProviderSetup,
    WebSocketConnector,
    build_provider,
    connect_websocket,
    unavailable_reason,
)
from switchboard.actors.supervisor import CallReport, ProviderFactory, ProviderRun, Supervisor
from switchboard.actors.tape import RecordingTape
from switchboard.actors.tool_executor import ToolExecutor, TwilioRest
from switchboard.actors.tools.guarded_http import GuardedHttp
from switchboard.actors.tools.invocation import KnowledgeSearch
from switchboard.actors.tools.kit import ToolKit

from .agent_versions import spec_version
from .call_metrics import CallMetrics, CallObserver, door_of
from .journal import CallEnd, CallJournal
from .recording import CallRecorder, Recordings
from .store import EventRow, Store
from .tenant_tools import tool_settings

log = structlog.get_logger("switchboard.call")

AUDIO_CHANNEL_SIZE = 64  # a little over a second of 20 ms frames
EVENT_CHANNEL_SIZE = 4096


class Actor(Protocol):
    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...


class ProviderCatalog(Protocol):
    """Which provider modes can run and how each is built (a replay plays recorded ones)."""

    def unavailable(self, mode: str) -> str | None:
        """Why ``mode`` cannot run here, or None."""

    def build(self, mode: str, setup: ProviderSetup) -> ProviderRun:
        """The provider actor of ``mode`` for ``setup``."""


@dataclass(frozen=True)
class EndpointProviders:
    """The real providers: the adapters of :mod:`switchboard.actors.providers`, available
    when their credentials are set in ``endpoints``."""

    endpoints: Endpoints

    def unavailable(self, mode: str) -> str | None:
        return unavailable_reason(mode, self.endpoints)

    def build(self, mode: str, setup: ProviderSetup) -> ProviderRun:
        return build_provider(mode, setup)


class MakeTools(Protocol):
    """Builds the call's tool executor (:class:`ToolExecutor`'s keyword signature)."""

    def __call__(
        self,
        ctx: CallContext,
        *,
        inbox: trio.MemoryReceiveChannel[ToTools],
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        events: EventSink,
        twilio: TwilioRest | None,
        http: httpx.AsyncClient | None,
        kit: ToolKit,
    ) -> Actor: ...


MakeTransport = Callable[
    [
        trio.MemoryReceiveChannel[ToTransport],
        trio.MemorySendChannel[ToSupervisor],
        HearCaller,
        EventSink,
    ],
    Actor,
]
"""Builds the transport actor from its inbox, its channel to the supervisor, the
supervisor's line for caller audio and its event sink."""


@dataclass
class CallResources:
    """What calls share within one server process."""

    store: Store
    assets: AssetRegistry = field(default_factory=AssetRegistry)
    twilio_rest: TwilioRest | None = None
    spool_dir: Path | None = None
    http: httpx.AsyncClient | None = None
    """Shared by the calls (its connection pool and TLS context are made once); None: each
    call opens its own (tests)."""
    endpoints: Endpoints = field(default_factory=Endpoints)
    connect: WebSocketConnector = connect_websocket
    health: ProviderHealth = field(default_factory=lambda: ProviderHealth(trio.current_time))
    metrics: FailoverMetrics = field(default_factory=FailoverMetrics)
    call_metrics: CallMetrics = field(default_factory=CallMetrics)
    """The calls' metrics (:mod:`.call_metrics`); the server's are in its registry."""
    kept_versions: set[tuple[UUID, UUID, str]] = field(default_factory=set)
    """The agent versions (tenant, agent, version) this process has made sure are stored."""
    recordings: Recordings | None = None
    """Where recorded calls' audio goes (:mod:`.recording`); None: no call is recorded."""
    providers: ProviderCatalog | None = None
    """Which modes can run and how each is built; None: the real adapters on ``endpoints``."""
    make_tools: MakeTools = ToolExecutor
    apology: Callable[[CallContext], Awaitable[AudioChunk]] | None = None
    """The failover apology in the caller's format; None: the local voice's (made ahead)."""
    run_sync: RunSync = trio.to_thread.run_sync
    """How the store's blocking calls run (a replay's in-memory store runs inline)."""
    web: GuardedHttp | None = None
    """The guarded client of webhook and edge-function tools (``GuardedHttp``); None:
    those tools fail with ``not_configured``."""
    functions_base_url: str | None = None
    """``FUNCTIONS_BASE_URL``; ``{tenant}`` in it is the call's tenant name."""
    knowledge: KnowledgeSearch | None = None
    """The agents' knowledge index (``search_knowledge``); None: not available."""


def fallback_chain(ctx: CallContext) -> list[str]:
    """The agent's chain: ``mode``, then ``fallback``, then ``local`` (each mode once)."""
    return list(dict.fromkeys([ctx.agent.mode, *ctx.agent.fallback, "local"]))


def provider_chain(
    ctx: CallContext, res: CallResources, http: httpx.AsyncClient
) -> tuple[list[str], ProviderFactory, list[tuple[str, str]]]:
    """The links of the agent's chain that can run here, and how to build each.

    Returns the runnable modes in order (``local`` always last), a factory
    for the supervisor, and the modes skipped with the reason (unknown mode,
    credentials not set) for the log.
    """
    catalog = res.providers or EndpointProviders(res.endpoints)
    chain: list[str] = []
    skipped: list[tuple[str, str]] = []
    for mode in fallback_chain(ctx):
        reason = catalog.unavailable(mode)
        if reason is None:
            chain.append(mode)
        else:
            skipped.append((mode, reason))
    base = ProviderSetup(ctx, res.endpoints, res.connect, http, res.assets)

    def make(mode: str, start: ProviderStart) -> ProviderRun:
        setup = replace(
            base,
            conversation=start.conversation,
            greet=start.greet,
            respond_now=start.respond_now,
            source=f"{mode}#{start.generation}",
        )
        return catalog.build(mode, setup)

    return chain, make, skipped


async def run_call(
    ctx: CallContext,
    make_transport: MakeTransport,
    res: CallResources,
    *,
    on_logged: OnLogged | None = None,
    door: str | None = None,
) -> CallReport:
    """Run one call to its end; return the supervisor's report.

    The call's events (``session.start`` first, ``session.end`` last) are in
    PostgreSQL when this returns, and the session row is marked ended with a
    call_logs row; what PostgreSQL did not take is in the call's journal in
    ``res.spool_dir`` (:mod:`.journal`), which the spool drainer writes later.
    ``on_logged`` sees each event as it is numbered, before it is written (the
    browser page's feed: the database is not on that path). ``door`` labels the
    call's metrics (``twilio.stream``, ``browser.voice``, ``browser.stream``,
    ``realtime``); None: guessed from ``ctx`` (:func:`.call_metrics.door_of`).
    """
    structlog.contextvars.bind_contextvars(
        session_id=str(ctx.session_id), tenant_id=str(ctx.tenant_id), call_sid=ctx.call_sid
    )
    async with contextlib.AsyncExitStack() as stack:
        http = res.http
        if http is None:
            http = await stack.enter_async_context(httpx.AsyncClient())
        observer = CallObserver(ctx, door or door_of(ctx), res.call_metrics, res.metrics)
        try:
            return await _run_call(ctx, make_transport, res, http, on_logged, observer)
        finally:
            observer.close()


def open_journal(folder: Path | None, ctx: CallContext, started_at: datetime) -> CallJournal | None:
    """The call's write-ahead journal in ``folder``, or None (no folder, or it cannot be
    written: logged, and the call goes on with the database as its only record)."""
    if folder is None:
        return None
    try:
        return CallJournal(folder, ctx.tenant_id, ctx.session_id, started_at)
    except OSError as exc:
        log.error("no call journal: events wait in memory only", error=repr(exc))
        return None


def _tee(journal: CallJournal | None, *watchers: OnLogged | None) -> OnLogged | None:
    """The journal's append first (the write-ahead copy), then each watcher."""
    calls = [f for f in (None if journal is None else journal.append, *watchers) if f is not None]
    if len(calls) <= 1:
        return calls[0] if calls else None

    def each(row: EventRow) -> None:
        for call in calls:
            call(row)

    return each


def _lost(rows: Sequence[EventRow]) -> None:
    log.error("events lost: database unreachable, no call journal", rows=len(rows))


async def _record_end(res: CallResources, ctx: CallContext, end: CallEnd) -> bool:
    """Close the session and write its call_logs row; False if PostgreSQL did not take it
    within 10 s (the journal keeps the end for the drainer)."""
    store, run_sync = res.store, res.run_sync
    with trio.move_on_after(10):
        try:
            await run_sync(
                partial(
                    store.finish_session,
                    ctx.tenant_id,
                    ctx.session_id,
                    end_reason=end.end_reason,
                    turns=end.turns,
                    started_at=end.started_at,
                    ended_at=end.ended_at,
                )
            )
            return True
        except Exception as exc:
            log.warning("the end of the call is not in the database yet", error=repr(exc))
    return False


async def _keep_agent_version(ctx: CallContext, res: CallResources, version: str) -> None:
    """Store the call's agent as a version if it is not stored yet (an agent applied before
    versions existed), off the call's path; once per process and version. A failure is
    logged: the call goes on, and its trace will lack the snapshot."""
    key = (ctx.tenant_id, ctx.agent_id, version)
    if key in res.kept_versions:
        return
    with trio.move_on_after(10):
        try:
            await res.run_sync(
                res.store.keep_agent_version,
                ctx.tenant_id,
                ctx.agent_id,
                ctx.agent,
                abandon_on_cancel=True,
            )
            res.kept_versions.add(key)
        except Exception as exc:
            log.warning("agent version not stored", version=version, error=repr(exc))


async def tool_kit(ctx: CallContext, res: CallResources, http: httpx.AsyncClient) -> ToolKit:
    """What the call's tools need (:class:`ToolKit`). The tenant's signing secret and
    allowlist are read only for an agent with a webhook or an edge function."""
    tenant = None
    if any(t.kind in ("webhook", "function") for t in ctx.agent.tools):
        db = getattr(res.store, "db", None)
        if db is not None:
            try:
                tenant = await res.run_sync(
                    tool_settings, db, ctx.tenant_id, abandon_on_cancel=True
                )
            except Exception as exc:  # the tools say not_configured; the call goes on
                log.warning("tenant tool settings not read", error=repr(exc))
    base = res.functions_base_url
    return ToolKit(
        twilio=res.twilio_rest,
        http=http,
        web=res.web,
        tenant=tenant,
        functions_base_url=None if base is None else base.replace("{tenant}", ctx.agent.tenant),
        knowledge=res.knowledge,
    )


async def _guarded(
    ctx: CallContext,
    run: Callable[..., Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an actor; an exception it raises is recorded as the call's fault first, so the
    transport, cancelled next, closes the socket with 1011 and the cause."""
    try:
        await run(task_status=task_status)
    except Exception as exc:
        ctx.fault.record(exc)
        raise


async def _run_call(
    ctx: CallContext,
    make_transport: MakeTransport,
    res: CallResources,
    http: httpx.AsyncClient,
    on_logged: OnLogged | None,
    observer: CallObserver,
) -> CallReport:
    started_at = datetime.now(UTC)
    events_send, events_receive = trio.open_memory_channel[CallEvent](EVENT_CHANNEL_SIZE)
    inbox_send, inbox_receive = trio.open_memory_channel[ToSupervisor](AUDIO_CHANNEL_SIZE)
    transport_send, transport_receive = trio.open_memory_channel[ToTransport](AUDIO_CHANNEL_SIZE)
    tools_send, tools_receive = trio.open_memory_channel[ToTools](16)
    sink = EventSink(ctx, events_send)

    journal = open_journal(res.spool_dir, ctx, started_at)
    logger = EventLogger(
        ctx,
        inbox=events_receive,
        write_batch=partial(res.store.append_events, ctx.tenant_id, ctx.session_id),
        on_logged=_tee(journal, on_logged, observer.on_logged),
        on_unwritten=None if journal is not None else _lost,
        on_written=observer.on_written,
        run_sync=res.run_sync,
    )
    chain, make_provider, skipped = provider_chain(ctx, res, http)

    async def apology() -> AudioChunk:
        if res.apology is not None:
            return await res.apology(ctx)
        assets = res.assets.get(ctx.agent)
        prepared = assets.prepared_apology(ctx.caller_format)
        if prepared is not None:
            return prepared  # made when the agent was loaded: no worker, no wait
        return await assets.apology(ctx.caller_format)

    supervisor = Supervisor(
        ctx,
        chain=chain,
        make_provider=make_provider,
        apology=apology,
        health=res.health,
        metrics=res.metrics,
        inbox=inbox_receive,
        inbox_sender=inbox_send,
        to_transport=transport_send,
        to_tools=tools_send,
        events=sink.clone(),
    )
    tools = res.make_tools(
        ctx,
        inbox=tools_receive,
        to_supervisor=inbox_send.clone(),
        events=sink.clone(),
        twilio=res.twilio_rest,
        http=http,
        kit=await tool_kit(ctx, res, http),
    )
    transport = make_transport(transport_receive, inbox_send.clone(), supervisor.hear, sink.clone())
    recorder = (
        CallRecorder(ctx, res.recordings, res.store, sink.clone())
        if res.recordings is not None and isinstance(ctx.tape, RecordingTape)
        else None
    )

    report = supervisor.report
    try:
        async with trio.open_nursery() as outer:
            await outer.start(logger.run)
            version = spec_version(ctx.agent)
            outer.start_soon(_keep_agent_version, ctx, res, version)
            if recorder is not None:
                await outer.start(recorder.run)
            try:
                await sink.emit(
                    "session.start",
                    agent=ctx.agent.name,
                    agent_id=str(ctx.agent_id),
                    agent_version=version,
                    call_sid=ctx.call_sid,
                    stream_sid=ctx.stream_sid,
                    from_number=ctx.from_number,
                    to_number=ctx.to_number,
                    caller_format={
                        "encoding": ctx.caller_format.encoding,
                        "sample_rate": ctx.caller_format.sample_rate,
                    },
                    provider=chain[0],
                    chain=chain,
                    mode_source=ctx.extra.get("mode_source", "agent"),
                )
                for skipped_mode, reason in skipped:
                    log.warning("provider skipped", provider=skipped_mode, reason=reason)
                    await sink.emit("provider.skipped", provider=skipped_mode, reason=reason)
                try:
                    async with trio.open_nursery() as actors:
                        await actors.start(_guarded, ctx, tools.run)
                        await actors.start(_guarded, ctx, supervisor.run)
                        await actors.start(_guarded, ctx, transport.run)
                except Exception as exc:  # an actor crashed: the call ends, the server goes on
                    ctx.fault.record(exc)
                    error = ctx.fault.error
                    assert error is not None and ctx.fault.reason is not None
                    report.end_reason = ctx.fault.reason
                    log.error("call crashed", exc_info=error)
                    await sink.emit(
                        "error",
                        where="call",
                        reason="crashed",
                        exception=type(error).__name__,
                        detail=str(error)[:500],
                    )
            finally:
                with trio.CancelScope(shield=True):
                    if recorder is not None:  # its failures are events: before the end
                        await recorder.finish()
                    await sink.emit(
                        "session.end",
                        reason=report.end_reason,
                        turns_completed=report.turns_completed,
                        duration_ms=round(ctx.now_ms(), 1),
                    )
                    await sink.aclose()
    finally:
        end = CallEnd(report.end_reason, report.turns_completed, started_at, datetime.now(UTC))
        with trio.CancelScope(shield=True):
            if journal is not None:  # in a thread: it ends with an fsync
                await trio.to_thread.run_sync(journal.finish, end)
            if journal is not None and logger.unwritten > 0:
                # The drainer writes the journal's events first, then the end: a
                # call_logs row never comes before the events it closes.
                recorded = False
            else:
                recorded = await _record_end(res, ctx, end)
        kept = journal is not None and (not recorded or logger.unwritten > 0)
        if journal is not None:
            journal.close(keep=kept)
        log.info(
            "call ended",
            reason=report.end_reason,
            turns=report.turns_completed,
            events=logger.last_seq,
            unwritten=logger.unwritten,
            journal_kept=kept,
        )
        structlog.contextvars.unbind_contextvars("session_id", "tenant_id", "call_sid")
    return report
