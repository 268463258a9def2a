"""The supervisor: owns the provider, routes every message, counts turns, reports.

It starts the provider in a nursery of its own, so a provider crash becomes a
:class:`ProviderFailed` for the supervisor to handle rather than the end of
the call. In this version it runs one provider (the agent's ``mode``); the
fallback chain is the failover work's.

A turn is complete when the agent's response to a caller utterance has
finished (the greeting does not count).

Barge-in: when the provider reports caller speech (:class:`SpeechStarted`)
while agent audio is unheard or a response is running, the supervisor tells
the transport to clear its queue; the transport answers with what the caller
heard (:class:`PlaybackCleared`), and the provider is told to truncate the
response there (:class:`TruncateResponse`). Audio of a truncated response
that arrives later is dropped. Actions a tool defers until the
caller has heard the response (hang up, transfer) run when the transport
confirms the response's closing mark.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
import trio

from .context import CallContext, EventSink
from .messages import (
    AgentAudio,
    AgentTranscript,
    CallerAudio,
    CallerDtmf,
    CallerHungUp,
    CallerTranscript,
    ClearPlayback,
    EndCall,
    HangUpAfterResponse,
    MarkPlayback,
    PlayAudio,
    PlaybackCleared,
    PlaybackMarked,
    ProviderFailed,
    ProviderReady,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    ToolResult,
    ToProvider,
    ToSupervisor,
    ToTools,
    ToTransport,
    TransferAfterResponse,
    TransferCall,
    TransportFailed,
    TruncateResponse,
)

log = structlog.get_logger("switchboard.supervisor")

ProviderRun = Callable[
    [trio.MemoryReceiveChannel[ToProvider], trio.MemorySendChannel[ToSupervisor], EventSink],
    Awaitable[None],
]
"""A provider actor: reads its inbox, writes to the supervisor, logs events."""


@dataclass
class CallReport:
    """What the supervisor reports when the call ends."""

    turns_completed: int = 0
    end_reason: str = "caller hung up"
    provider: str = ""


class Supervisor:
    """Route messages between transport, provider and tools for one call."""

    def __init__(
        self,
        ctx: CallContext,
        *,
        provider_name: str,
        provider: ProviderRun,
        inbox: trio.MemoryReceiveChannel[ToSupervisor],
        inbox_sender: trio.MemorySendChannel[ToSupervisor],
        to_transport: trio.MemorySendChannel[ToTransport],
        to_tools: trio.MemorySendChannel[ToTools],
        events: EventSink,
    ) -> None:
        self.ctx = ctx
        self.report = CallReport(provider=provider_name)
        self._provider_name = provider_name
        self._provider = provider
        self._inbox = inbox
        self._inbox_sender = inbox_sender
        self._to_transport = to_transport
        self._to_tools = to_tools
        self._events = events
        self._to_provider: trio.MemorySendChannel[ToProvider] | None = None
        self._greetings: set[str] = set()
        self._deferred: dict[str, TransferAfterResponse | HangUpAfterResponse] = {}
        self._ending = False
        self._last_caller_speech_s = trio.current_time()
        self._running: str | None = None  # response started, not done
        self._unheard: str | None = None  # response whose audio is not all heard yet
        self._truncated: set[str] = set()
        self._barge_in_s: float | None = None  # when the caller's speech interrupted
        self._interrupting: set[str] = set()  # responses cut by the pending clear

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the caller hangs up or the call is ended; then close what it owns."""
        agent = self.ctx.agent
        try:
            async with trio.open_nursery() as nursery:
                to_provider, provider_inbox = trio.open_memory_channel[ToProvider](64)
                self._to_provider = to_provider
                nursery.start_soon(self._run_provider, provider_inbox, self._inbox_sender.clone())
                nursery.start_soon(self._watch_idle, agent.idle_timeout_seconds)
                task_status.started()
                with trio.move_on_after(agent.max_call_seconds) as limit:
                    await self._route()
                if limit.cancelled_caught:
                    await self._end_call("max_call_seconds reached")
                    await self._route()  # until the transport reports the hang-up
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._inbox.aclose()  # late senders (a slow tool) get BrokenResourceError
                await self._inbox_sender.aclose()
                await self._to_transport.aclose()
                await self._to_tools.aclose()
                if self._to_provider is not None:
                    await self._to_provider.aclose()
                await self._events.emit(
                    "supervisor.report",
                    turns_completed=self.report.turns_completed,
                    end_reason=self.report.end_reason,
                    provider=self._provider_name,
                )
                await self._events.aclose()

    async def _run_provider(
        self,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: trio.MemorySendChannel[ToSupervisor],
    ) -> None:
        """The provider's own nursery: a crash there is reported, not propagated."""
        events = self._events.clone()
        async with outbox:
            try:
                await self._provider(inbox, outbox, events)
            except Exception as exc:  # the failure is itself the message
                log.exception("provider crashed", provider=self._provider_name)
                await outbox.send(
                    ProviderFailed(self._provider_name, "crash", f"{type(exc).__name__}: {exc}")
                )
            finally:
                with trio.CancelScope(shield=True):
                    await events.aclose()

    async def _watch_idle(self, idle_timeout_s: float) -> None:
        """End the call after ``idle_timeout_s`` without caller speech (a moving deadline)."""
        if not idle_timeout_s or math.isinf(idle_timeout_s):
            return
        while True:
            deadline = self._last_caller_speech_s + idle_timeout_s
            await trio.sleep_until(deadline)
            if self._last_caller_speech_s + idle_timeout_s <= trio.current_time():
                await self._end_call(f"no caller speech for {idle_timeout_s:g} s")
                return

    async def _route(self) -> None:
        async for message in self._inbox:
            if isinstance(message, (CallerHungUp, TransportFailed)):
                if isinstance(message, TransportFailed):
                    await self._events.emit(
                        "disconnect", reason=message.reason, detail=message.detail
                    )
                if not self._ending:
                    self.report.end_reason = (
                        message.reason if isinstance(message, CallerHungUp) else "transport failed"
                    )
                return
            await self._handle(message)

    async def _handle(self, message: ToSupervisor) -> None:
        to_provider = self._to_provider
        assert to_provider is not None
        if isinstance(message, CallerAudio):
            await to_provider.send(message)
        elif isinstance(message, AgentAudio):
            if message.response_id in self._truncated:
                return  # the caller interrupted it: never play the rest
            self._unheard = message.response_id
            await self._to_transport.send(PlayAudio(message.chunk, message.response_id))
        elif isinstance(message, ResponseStarted):
            self._running = message.response_id
            if message.greeting:
                self._greetings.add(message.response_id)
            await self._events.emit(
                "response.start", response_id=message.response_id, greeting=message.greeting
            )
        elif isinstance(message, ResponseDone):
            await self._on_response_done(message)
        elif isinstance(message, AgentTranscript):
            await self._events.emit(
                "turn:agent",
                text=message.text,
                response_id=message.response_id,
                interrupted=message.response_id in self._truncated,
            )
        elif isinstance(message, CallerTranscript):
            await self._events.emit(
                "turn:user",
                text=message.text,
                intent=message.intent,
                confidence=message.confidence,
                audio_start_ms=message.start_ms,
                audio_end_ms=message.end_ms,
            )
        elif isinstance(message, SpeechStarted):
            self._last_caller_speech_s = trio.current_time()
            await self._events.emit("speech.started", audio_offset_ms=message.offset_ms)
            await self._on_caller_speech()
        elif isinstance(message, PlaybackCleared):
            await self._on_cleared(message)
        elif isinstance(message, SpeechStopped):
            self._last_caller_speech_s = trio.current_time()
            await self._events.emit("speech.stopped", audio_offset_ms=message.offset_ms)
        elif isinstance(message, ToolCallRequested):
            await self._events.emit(
                "tool:call",
                call_id=message.call_id,
                name=message.name,
                arguments=dict(message.arguments),
                response_id=message.response_id,
            )
            await self._to_tools.send(message)
        elif isinstance(message, ToolResult):
            await self._events.emit(
                "tool:result",
                call_id=message.call_id,
                name=message.name,
                ok=message.ok,
                output=message.output,
                response_id=message.response_id,
            )
            if message.after_response is not None:
                self._deferred[message.response_id] = message.after_response
            await to_provider.send(message)
        elif isinstance(message, PlaybackMarked):
            await self._on_mark(message.name)
        elif isinstance(message, CallerDtmf):
            await self._events.emit("dtmf", digit=message.digit)
        elif isinstance(message, ProviderReady):
            await self._events.emit("provider.ready", provider=message.provider)
        elif isinstance(message, ProviderFailed):
            await self._events.emit(
                "provider.failed",
                provider=message.provider,
                kind=message.kind,
                detail=message.detail,
                turn=self.report.turns_completed,
            )
            await self._events.emit("error", where="provider", detail=message.detail)
            await self._end_call(f"provider {message.provider} failed: {message.kind}")

    async def _on_caller_speech(self) -> None:
        """Barge-in: stop the agent if it is talking or about to."""
        targets = {r for r in (self._unheard, self._running) if r and r not in self._truncated}
        if not targets or self._barge_in_s is not None:
            return
        self._barge_in_s = trio.current_time()
        self._interrupting = targets
        self._truncated |= targets  # from now on their audio is dropped
        await self._to_transport.send(ClearPlayback())

    async def _on_cleared(self, message: PlaybackCleared) -> None:
        started_s, self._barge_in_s = self._barge_in_s, None
        targets, self._interrupting = self._interrupting, set()
        self._unheard = None
        assert self._to_provider is not None
        for response_id in sorted(targets):
            played = message.response_id == response_id
            heard_ms = message.heard_ms if played else 0.0
            await self._to_provider.send(TruncateResponse(response_id, heard_ms))
            await self._events.emit(
                "barge_in",
                response_id=response_id,
                heard_ms=heard_ms,
                sent_ms=message.sent_ms if played else 0.0,
                clear_after_ms=(
                    None if started_s is None else round((trio.current_time() - started_s) * 1e3, 1)
                ),
            )

    async def _on_response_done(self, message: ResponseDone) -> None:
        if self._running == message.response_id:
            self._running = None
        greeting = message.response_id in self._greetings
        interrupted = message.interrupted or message.response_id in self._truncated
        if not greeting and not interrupted:
            self.report.turns_completed += 1
        await self._events.emit(
            "response.done",
            response_id=message.response_id,
            interrupted=message.interrupted,
            greeting=greeting,
            turns_completed=self.report.turns_completed,
        )
        await self._to_transport.send(MarkPlayback(f"response:{message.response_id}"))

    async def _on_mark(self, name: str) -> None:
        await self._events.emit("playback.marked", name=name)
        if not name.startswith("response:"):
            return
        response_id = name.removeprefix("response:")
        if self._unheard == response_id:
            self._unheard = None  # all of it has played
        action = self._deferred.pop(response_id, None)
        if isinstance(action, HangUpAfterResponse):
            await self._end_call("agent hung up")
        elif isinstance(action, TransferAfterResponse):
            await self._to_tools.send(TransferCall(action.number, self.ctx.call_sid))

    async def _end_call(self, reason: str) -> None:
        if self._ending:
            return
        self._ending = True
        self.report.end_reason = reason
        await self._events.emit("call.ending", reason=reason)
        await self._to_transport.send(EndCall(reason))
