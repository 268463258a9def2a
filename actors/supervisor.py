"""The supervisor: owns the provider, routes every message, counts turns, fails over.

It runs the provider in a slot of its own (:class:`ProviderSlot`), so a
provider crash becomes a :class:`ProviderFailed` for the supervisor to handle
rather than the end of the call, and messages of a replaced provider are
dropped by generation.

A turn is complete when the agent's response to a caller utterance has
finished (the greeting does not count). Actions a tool defers until the
caller has heard the response (hang up, transfer) run when the transport
confirms the response's closing mark.

Barge-in: when the provider reports caller speech (:class:`SpeechStarted`)
while agent audio is unheard or a response is running, the supervisor tells
the transport to clear its queue; the transport answers with what the caller
heard (:class:`PlaybackCleared`), and the provider is told to truncate the
response there (:class:`TruncateResponse`). Audio of a truncated response
that arrives later is dropped.

Typed text (:class:`CallerText`, from the browser or ``/v1/realtime``) is a
caller turn: logged as ``turn:user`` with ``typed: true``, recorded in the
conversation, counted by the idle timer and the failover policy as a finished
utterance, and given to the live provider. Typed while the agent speaks it is
a barge-in, as speech would be: the text reaches the provider after the
truncation. A client's :class:`CancelResponse` (``response.cancel``) is a
barge-in without a turn, logged as ``response.cancel``.

Failover (DESIGN.md, "The failover supervisor"): a failure the provider
reports, or a stall the supervisor's :class:`StallWatch` detects (no output
within ``stall_timeout_ms`` of the caller finishing or a response being
requested, a gap over ``audio_gap_timeout_ms`` mid-response, no session
within ``connect_timeout_ms``), goes to the failover policy, whose decision
is carried out here: start the next link of the fallback chain with the
conversation so far, reconnect the same provider, or give up with the
apology (made ahead with the local voice) and a transfer or a polite end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog
import trio

from .consent import ConsentReport
from .context import CallContext, EventSink
from .conversation import Conversation
from .failover.decisions import Connect, Decision, DoNothing, GiveUp, Reconnect, SwitchTo
from .failover.health import ProviderHealth
from .failover.inputs import (
    CallerFinishedSpeaking,
    CallerStartedSpeaking,
    CallStarted,
    FailoverInput,
    FailureReported,
    OutputProduced,
    ProgressReported,
    ProviderConnected,
    ResponseEnded,
    ResponseRequested,
    Ticked,
    ToolCallStarted,
)
from .failover.metrics import FailoverMetrics
from .failover.policy import FailoverPolicy
from .idle_timer import IdleTimer
from .messages import (
    SHOWN_EVENT_TYPES,
    AgentAudio,
    AgentTranscript,
    AudioChunk,
    CallerAudio,
    CallerDtmf,
    CallerHungUp,
    CallerText,
    CallerTranscript,
    CancelResponse,
    ClearPlayback,
    EndCall,
    FromProvider,
    HangUpAfterResponse,
    MarkPlayback,
    PlayAudio,
    PlaybackCleared,
    PlaybackMarked,
    ProviderFailed,
    ProviderOutput,
    ProviderReady,
    ProviderWorking,
    RespondNow,
    ResponseDone,
    ResponseStarted,
    ShowEvent,
    SpeechHeard,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequested,
    ToolResult,
    ToSupervisor,
    ToTools,
    ToTransport,
    TransferAfterResponse,
    TransferCall,
    TransferFailed,
    TransportFailed,
    TruncateResponse,
)
from .provider_slot import ProviderRun, ProviderSlot, ProviderStart
from .tool_calls import ToolCalls
from .watchdog import Watchdog

__all__ = ["CallReport", "ProviderFactory", "ProviderRun", "Supervisor"]

log = structlog.get_logger("switchboard.supervisor")

ProviderFactory = Callable[[str, ProviderStart], ProviderRun]
"""Builds the provider actor of a chain link (mode) for a start (greet, conversation, ...)."""

ApologySource = Callable[[], Awaitable[AudioChunk]]
"""The apology in the caller's format (made ahead with the local voice)."""

APOLOGY_ID = "apology"

TRANSFER_FAILED_SAY = "I'm sorry, I couldn't put you through. Can I help you with anything else?"
"""What a provider without a model (the local intent policy) says when a transfer failed."""


@dataclass
class CallReport:
    """What the supervisor reports when the call ends."""

    turns_completed: int = 0
    end_reason: str = "caller hung up"
    provider: str = ""
    switches: int = 0


class Supervisor:
    """Route messages between transport, provider and tools for one call."""

    def __init__(
        self,
        ctx: CallContext,
        *,
        chain: Sequence[str],
        make_provider: ProviderFactory,
        inbox: trio.MemoryReceiveChannel[ToSupervisor],
        inbox_sender: trio.MemorySendChannel[ToSupervisor],
        to_transport: trio.MemorySendChannel[ToTransport],
        to_tools: trio.MemorySendChannel[ToTools],
        events: EventSink,
        apology: ApologySource,
        health: ProviderHealth | None = None,
        metrics: FailoverMetrics | None = None,
    ) -> None:
        if not chain:
            raise ValueError("the fallback chain is empty")
        self.ctx = ctx
        self.report = CallReport(provider=chain[0])
        self._chain = tuple(chain)
        self._make_provider = make_provider
        self._inbox = inbox
        self._inbox_sender = inbox_sender
        self._to_transport = to_transport
        self._to_tools = to_tools
        self._events = events
        self._apology = apology
        self._policy = FailoverPolicy(
            self._chain, ctx.agent.failover, transfer_number=ctx.agent.transfer_number
        )
        self._health = health or ProviderHealth(trio.current_time)
        self._metrics = metrics or FailoverMetrics()
        self._slot: ProviderSlot | None = None
        self._watch = Watchdog()
        self._conversation = Conversation()
        self._tool_calls = ToolCalls(ctx.agent)
        self._gave_up = False
        self._answered_by: int | None = None  # the instance whose first output was recorded
        self._audible: str | None = None  # the response whose audio was played last
        self._sounded: set[str] = set()  # responses whose first audio was logged
        self._utterance_closed = False  # SpeechStopped seen for the caller's current turn
        self._greetings: set[str] = set()
        self._consent = ConsentReport(ctx.consent)  # the recording.consent event, once
        self._deferred: dict[str, TransferAfterResponse | HangUpAfterResponse] = {}
        self._ending = False
        self._idle = IdleTimer(ctx.agent.idle_timeout_seconds, trio.current_time())
        self._words_lost = False  # caller speech since the last transcript (for a switch)
        self._running: str | None = None  # response started, not done
        self._unheard: str | None = None  # response whose audio is not all heard yet
        self._truncated: set[str] = set()
        self._barge_in_s: float | None = None  # when the caller's speech interrupted
        self._interrupting: set[str] = set()  # responses cut by the pending clear
        self._playout_end_s = trio.current_time()  # when the agent audio sent will have played
        self._switched: tuple[str, str, int, float] | None = None  # from, to, turn, silent since
        self._transport_closed = False
        self._typed_held: list[CallerText] = []  # typed turns waiting for a barge-in's clear
        # Responses a typed turn interrupted, not yet done: the typed lines to record after
        # them (their cut transcript comes first in the conversation, as heard).
        self._typed_over: dict[str, list[str]] = {}

    # -- life cycle ----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until the caller hangs up or the call is ended; then close what it owns."""
        agent = self.ctx.agent
        try:
            async with trio.open_nursery() as nursery:
                self._slot = ProviderSlot(
                    nursery,
                    to_supervisor=self._inbox_sender,
                    events=self._events,
                    play_now=self._play_now,
                    tape=self.ctx.tape,
                )
                nursery.start_soon(self._watch.run, self._on_deadline)
                await self._feed(CallStarted(trio.current_time(), self._cooling()))
                await self._report_consent(self._consent.at_start())
                nursery.start_soon(self._idle.run, self._on_idle)
                task_status.started()
                with trio.move_on_after(agent.max_call_seconds) as limit:
                    await self._route()
                if limit.cancelled_caught:
                    await self._end_call("max_call_seconds reached")
                    await self._route()  # until the transport reports the hang-up
                nursery.cancel_scope.cancel()
        except Exception as exc:  # recorded before the transport's inbox closes: 1011, not 1000
            self.ctx.fault.record(exc)
            raise
        finally:
            with trio.CancelScope(shield=True):
                if self._slot is not None:
                    self._slot.stop()
                await self._inbox.aclose()  # late senders (a slow tool) get BrokenResourceError
                await self._inbox_sender.aclose()
                self._transport_closed = True
                await self._to_transport.aclose()
                await self._to_tools.aclose()
                await self._report_consent(self._consent.at_end())
                await self._emit(
                    "supervisor.report",
                    turns_completed=self.report.turns_completed,
                    end_reason=self.report.end_reason,
                    provider=self.report.provider,
                    switches=self.report.switches,
                )
                await self._events.aclose()

    def _start(self, mode: str, attempt: int, *, greet: bool, respond_now: bool) -> None:
        assert self._slot is not None
        if respond_now and self._words_lost:
            # The caller spoke and the provider failed before their words were
            # transcribed: the next one asks them to say it again.
            self._conversation.caller_unheard(self.ctx.agent.no_match_reply)
            self._words_lost = False
        self._typed_held.clear()  # in the conversation the new instance starts from
        for lines in self._typed_over.values():  # their responses' ends will not come
            for line in lines:
                self._caller_typed(line)
        self._typed_over.clear()
        start = ProviderStart(
            self._conversation.items(), greet=greet, respond_now=respond_now, generation=attempt
        )
        self.ctx.tape.instance_started(f"{mode}#{attempt}", greet=greet, respond_now=respond_now)
        self._slot.start(mode, lambda: self._make_provider(mode, start), generation=attempt)
        self._health.record_attempt(mode)
        self.report.provider = mode
        self._running = None
        self._idle.utterance_over(trio.current_time())  # the next provider reports afresh

    async def _on_idle(self) -> None:
        """The caller has been silent for ``idle_timeout_seconds`` (:class:`IdleTimer`)."""
        await self._end_call(f"no caller speech for {self._idle.timeout_s:g} s")

    # -- routing -------------------------------------------------------------

    def hear(self, audio: CallerAudio) -> None:
        """The transport's line for caller audio (:data:`~.messages.HearCaller`).

        Runs in the transport's task: the frame goes to the live provider (or
        the swap buffer) at once, and is dropped once the call has given up.
        """
        if self._slot is not None and not self._gave_up:
            self._slot.hear(audio)

    def _play_now(self, generation: int, message: AgentAudio) -> bool:
        """The provider's fast line for agent audio (:data:`~.provider_slot.PlayNow`).

        Runs in the provider's task. Takes the chunk only when handling it here
        is what :meth:`_from_provider` would do next: the supervisor waits on an
        empty inbox, the chunk is the live provider's and not its first, no
        switch is waiting to be logged, and the transport's inbox has room.
        Saves a channel hop and a task switch per 20 ms frame.
        """
        inbox = self._inbox.statistics()
        if inbox.current_buffer_used or not inbox.tasks_waiting_receive:
            return False  # something is ahead of it, or a handler is running
        slot = self._slot
        if slot is None or not slot.is_current(generation) or self._gave_up:
            return False
        response_id = _tag(message.response_id, generation)
        if self._audible != response_id or self._switched is not None:
            return False  # a response's first audio is logged (response.audio), a switch too
        out = self._to_transport.statistics()
        if self._transport_closed or out.current_buffer_used >= out.max_buffer_size:
            return False
        if response_id not in self._truncated:
            now = trio.current_time()
            self._to_transport.send_nowait(self._schedule(message.chunk, response_id, now))
            decision = self._feed_now(OutputProduced(max(now, self._playout_end_s)))
            assert decision is None, "the policy never acts on output (policy.handle)"
        return True

    async def _route(self) -> None:
        async for message in self._inbox:
            if isinstance(message, (CallerHungUp, TransportFailed)):
                if isinstance(message, TransportFailed):
                    await self._emit("disconnect", reason=message.reason, detail=message.detail)
                if not self._ending:
                    self.report.end_reason = (
                        message.reason
                        if isinstance(message, CallerHungUp)
                        else f"transport failed: {message.reason}"
                    )
                return
            await self._handle(message)

    async def _handle(self, message: ToSupervisor) -> None:
        assert self._slot is not None
        if isinstance(message, FromProvider):
            if self._slot.is_current(message.generation) and not self._gave_up:
                await self._from_provider(message.message, message.generation)
        elif isinstance(message, CallerAudio):  # a transport that does not use the line
            self.hear(message)
        elif isinstance(message, ToolResult):
            await self._on_tool_result(message)
        elif isinstance(message, PlaybackCleared):
            await self._on_cleared(message)
        elif isinstance(message, PlaybackMarked):
            await self._on_mark(message.name)
        elif isinstance(message, CallerDtmf):
            await self._emit("dtmf", digit=message.digit)
        elif isinstance(message, TransferFailed):
            await self._on_transfer_failed(message)
        elif isinstance(message, CallerText):
            await self._on_caller_text(message)
        elif isinstance(message, CancelResponse):
            await self._on_cancel_response()
        else:
            log.error("unexpected message", message=repr(message))

    async def _from_provider(self, message: ProviderOutput, generation: int) -> None:
        """One message of the live provider; response ids are made unique per generation."""
        now = trio.current_time()
        if isinstance(message, AgentAudio):
            response_id = _tag(message.response_id, generation)
            if response_id in self._truncated:
                return  # the caller interrupted it: never play the rest
            first = self._audible != response_id and self._first_audio(response_id, generation)
            await self._play(message.chunk, response_id)  # a switch is logged before it
            if first:
                greeting = response_id in self._greetings
                await self._emit("response.audio", response_id=response_id, greeting=greeting)
            # Providers send audio faster than real time: the caller is covered until
            # the audio sent so far has played, and a gap is counted from there.
            await self._feed(OutputProduced(max(now, self._playout_end_s)))
        elif isinstance(message, ResponseStarted):
            response_id = _tag(message.response_id, generation)
            self._running = response_id
            self._idle.utterance_over(now)  # the provider judged the caller's turn over
            if message.greeting:
                self._greetings.add(response_id)
            await self._emit("response.start", response_id=response_id, greeting=message.greeting)
        elif isinstance(message, ResponseDone):
            await self._on_response_done(_tag(message.response_id, generation), message.interrupted)
        elif isinstance(message, AgentTranscript):
            response_id = _tag(message.response_id, generation)
            interrupted = response_id in self._truncated
            self._conversation.agent(message, interrupted=interrupted)
            await self._emit(
                "turn:agent", text=message.text, response_id=response_id, interrupted=interrupted
            )
            if not interrupted:
                await self._feed(OutputProduced(now))
        elif isinstance(message, CallerTranscript):
            self._idle.caller_spoke(now, speaking=False)
            self._words_lost = self._words_lost and not message.text.strip()
            self._conversation.caller(message)
            await self._emit(
                "turn:user",
                text=message.text,
                intent=message.intent,
                confidence=message.confidence,
                audio_start_ms=message.start_ms,
                audio_end_ms=message.end_ms,
            )
            if not self._utterance_closed:  # an adapter without end-of-speech events
                await self._feed(CallerFinishedSpeaking(now))
            self._utterance_closed = False
        elif isinstance(message, SpeechHeard):
            self._idle.caller_spoke(now)
            self._words_lost = True
        elif isinstance(message, SpeechStarted):
            self._idle.caller_spoke(now, speaking=True)
            self._words_lost = True
            self._utterance_closed = False
            await self._emit("speech.started", audio_offset_ms=message.offset_ms)
            await self._on_caller_speech()
            await self._feed(CallerStartedSpeaking(now))
        elif isinstance(message, SpeechStopped):
            self._idle.caller_spoke(now, speaking=False)
            self._words_lost = True
            self._utterance_closed = True
            await self._emit("speech.stopped", audio_offset_ms=message.offset_ms)
            await self._feed(CallerFinishedSpeaking(now))
        elif isinstance(message, ToolCallRequested):
            self._conversation.tool_called(message)
            tagged = ToolCallRequested(
                message.call_id,
                message.name,
                message.arguments,
                _tag(message.response_id, generation),
            )
            await self._emit(
                "tool:call",
                call_id=message.call_id,
                name=message.name,
                arguments=dict(message.arguments),
                response_id=tagged.response_id,
            )
            self._tool_calls.called(tagged, generation, now)
            await self._to_tools.send(tagged)
            await self._feed(ToolCallStarted(now))
        elif isinstance(message, ProviderReady):
            assert self._slot is not None
            self._slot.mark_ready()
            await self._emit("provider.ready", provider=message.provider)
            await self._feed(ProviderConnected(now))
        elif isinstance(message, ProviderWorking):  # queued, not stalled (the local provider)
            await self._feed(ProgressReported(now))
        elif isinstance(message, ProviderFailed):
            self._health.record_failure(self._chain[self._policy.link], message.kind)
            await self._feed(
                FailureReported(
                    now, message.kind, message.detail, generation, cooling_down=self._cooling()
                )
            )

    def _first_audio(self, response_id: str, generation: int) -> bool:
        """A response's audio begins (once per response, never per frame): the instance has
        answered (its health is good). True the first time: then ``response.audio`` is
        logged, when the runtime has the answer's first audio to send (the end of
        response latency)."""
        self._audible = response_id
        if self._answered_by != generation:
            self._answered_by = generation
            self._health.record_success(self._chain[self._policy.link])
        if response_id in self._sounded:
            return False
        self._sounded.add(response_id)
        return True

    async def _play(self, chunk: AudioChunk, response_id: str) -> None:
        now = trio.current_time()
        starts_s = max(now, self._playout_end_s)  # when the caller will hear this chunk
        if self._switched is not None:
            source, target, turn, silent_since_s = self._switched
            self._switched = None
            await self._emit(
                "failover.switch",
                **{"from": source, "to": target},
                turn=turn,
                gap_ms=round(max(0.0, starts_s - silent_since_s) * 1e3, 1),
            )
        await self._to_transport.send(self._schedule(chunk, response_id, now))

    def _schedule(self, chunk: AudioChunk, response_id: str, now: float) -> PlayAudio:
        """Count ``chunk`` into the playout clock; the command that plays it."""
        self._unheard = response_id
        self._playout_end_s = max(now, self._playout_end_s) + chunk.duration_ms / 1000.0
        return PlayAudio(chunk, response_id)

    async def _on_tool_result(self, message: ToolResult) -> None:
        """A tool's acknowledgement or result (:mod:`.tool_calls` says where it goes)."""
        assert self._slot is not None
        now = trio.current_time()
        delivery = self._tool_calls.answered(message, self._slot.generation, now)
        if message.pending:
            await self._emit(
                "tool:ack",
                call_id=message.call_id,
                name=message.name,
                response_id=message.response_id,
                **delivery.timing,
            )
        else:
            await self._emit(
                "tool:result",
                call_id=message.call_id,
                name=message.name,
                ok=message.ok,
                output=message.output,
                response_id=message.response_id,
                after=_after(message.after_response),
                **({} if message.error is None else {"error": message.error}),
                **({"detail": dict(message.detail)} if message.detail else {}),
                **delivery.timing,
            )
        self._conversation.tool_done(message)
        if message.after_response is not None:
            self._deferred[message.response_id] = message.after_response
        if self._gave_up:
            return
        if delivery.to_provider:
            await self._slot.send(replace(message, response_id=_untag(message.response_id)))
            await self._feed(ResponseRequested(now))
        await self._follow_up_in_gap()

    async def _follow_up_in_gap(self) -> None:
        """Deliver a tool's late result (:mod:`.tool_calls`) if the conversation has a gap:
        no response running or unheard, the caller neither speaking nor owed an answer."""
        assert self._slot is not None
        if not self._tool_calls.owed() or self._gave_up or self._ending:
            return
        if self._running is not None or self._unheard is not None:
            return
        if self._idle.speaking or self._conversation.last_is_caller():
            return
        follow_up = self._tool_calls.next_follow_up()
        if follow_up is not None:
            await self._slot.send(follow_up)
            await self._feed(ResponseRequested(trio.current_time()))

    # -- barge-in --------------------------------------------------------------

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
        assert self._slot is not None
        started_s, self._barge_in_s = self._barge_in_s, None
        targets, self._interrupting = self._interrupting, set()
        self._unheard = None
        self._playout_end_s = trio.current_time()
        for response_id in sorted(targets):
            played = message.response_id == response_id
            heard_ms = message.heard_ms if played else 0.0
            if _generation_of(response_id) == self._slot.generation:
                await self._slot.send(TruncateResponse(_untag(response_id), heard_ms))
            await self._emit(
                "barge_in",
                response_id=response_id,
                heard_ms=heard_ms,
                sent_ms=message.sent_ms if played else 0.0,
                clear_after_ms=(
                    None if started_s is None else round((trio.current_time() - started_s) * 1e3, 1)
                ),
            )
        await self._send_typed()

    # -- typed text and client cancels -------------------------------------------

    async def _on_caller_text(self, message: CallerText) -> None:
        """A typed caller turn: logged and recorded like a transcript, then given to the
        provider. Over the agent's speech it is a barge-in (the caller took the floor):
        the answer is cleared and truncated first, and the text follows the truncation,
        in the order a spoken interruption reaches the provider."""
        now = trio.current_time()
        self._idle.caller_spoke(now, speaking=False)
        self._words_lost = False  # the caller's latest turn is known, as text
        await self._emit("turn:user", text=message.text, intent=None, confidence=None, typed=True)
        if self._gave_up:
            self._caller_typed(message.text)
            return  # nobody is left to answer: the apology is playing
        running = self._running
        await self._on_caller_speech()
        if running is not None and running in self._interrupting:
            # Recorded once the cut answer has ended, after what was heard of it; and
            # that (interrupted) end will tell the policy no answer is due: this turn's is.
            self._typed_over.setdefault(running, []).append(message.text)
        else:
            self._caller_typed(message.text)
        self._typed_held.append(message)
        if self._barge_in_s is None:
            await self._send_typed()
        await self._feed(CallerFinishedSpeaking(now))

    def _caller_typed(self, text: str) -> None:
        at_ms = self.ctx.now_ms()
        self._conversation.caller(CallerTranscript(text, at_ms, at_ms))

    async def _send_typed(self) -> None:
        """Give the provider the typed turns held back while a barge-in's clear was pending."""
        assert self._slot is not None
        held, self._typed_held = self._typed_held, []
        for message in held:
            await self._slot.send(message)

    async def _on_cancel_response(self) -> None:
        """The client stopped the agent's response (``response.cancel``): a barge-in
        without speech. The ``response.cancel`` event names the responses stopped
        (none when nothing was playing or running); ``barge_in`` follows as usual."""
        targets = sorted(
            {r for r in (self._unheard, self._running) if r and r not in self._truncated}
        )
        await self._emit("response.cancel", response_ids=targets)
        await self._on_caller_speech()

    # -- responses and marks -----------------------------------------------------

    async def _on_response_done(self, response_id: str, interrupted_by_provider: bool) -> None:
        if self._running == response_id:
            self._running = None
        greeting = response_id in self._greetings
        interrupted = interrupted_by_provider or response_id in self._truncated
        if not (greeting or interrupted):
            self._words_lost = False  # answered: whatever the caller said before is moot
        await self._feed(ResponseEnded(trio.current_time(), greeting, interrupted))
        typed = self._typed_over.pop(response_id, None)
        if typed is not None:  # cut by a typed turn, whose answer is still owed
            for line in typed:
                self._caller_typed(line)
            await self._feed(ResponseRequested(trio.current_time()))
        self.report.turns_completed = self._policy.turns_completed
        await self._emit(
            "response.done",
            response_id=response_id,
            interrupted=interrupted,
            greeting=greeting,
            turns_completed=self.report.turns_completed,
        )
        await self._to_transport.send(MarkPlayback(f"response:{response_id}"))
        await self._follow_up_in_gap()  # a response with no audio left nothing to hear

    async def _on_mark(self, name: str) -> None:
        await self._emit("playback.marked", name=name)
        if not name.startswith("response:"):
            return
        response_id = name.removeprefix("response:")
        if response_id in self._greetings:  # the caller has heard the greeting (and consent)
            await self._report_consent(self._consent.greeting_heard(self.ctx.now_ms()))
        if self._unheard == response_id:
            self._unheard = None  # all of it has played
            await self._follow_up_in_gap()
        action = self._deferred.pop(response_id, None)
        if isinstance(action, HangUpAfterResponse):
            await self._end_call("agent hung up" if response_id != APOLOGY_ID else "gave up")
        elif isinstance(action, TransferAfterResponse):
            await self._to_tools.send(TransferCall(action.number, self.ctx.call_sid))

    async def _on_transfer_failed(self, message: TransferFailed) -> None:
        """A deferred transfer was not redirected (the ``transfer`` event says why).

        After the failover apology nobody is left to talk to the caller: end the
        call now rather than leave them in silence until the idle timeout. Else
        the agent, which announced the transfer, is asked to tell the caller it
        did not happen (:class:`RespondNow`), watched like any owed answer.
        """
        assert self._slot is not None
        if self._gave_up:
            await self._end_call(f"gave up; transfer failed ({message.reason})")
            return
        # The agent announced the transfer: it now tells the caller it did not happen.
        note = (
            f"The transfer to {message.number} did not go through ({message.detail}). "
            "Tell the caller you could not put them through, and offer to help them yourself."
        )
        await self._slot.send(RespondNow(note, TRANSFER_FAILED_SAY))
        await self._feed(ResponseRequested(trio.current_time()))

    # -- failover ----------------------------------------------------------------

    def _cooling(self) -> Mapping[str, float]:
        return self._health.cooldowns(self._chain, self.ctx.agent.failover.cooldown_seconds)

    async def _on_deadline(self) -> None:
        await self._feed(Ticked(trio.current_time(), self._cooling()))

    async def _feed(self, event: FailoverInput) -> None:
        """Tell the policy what happened; carry out its decision; move the watch's deadline."""
        decision = self._feed_now(event)
        if decision is None:
            return  # what almost every input gets (each chunk of agent audio among them)
        failure = getattr(decision, "failure", None)
        if isinstance(event, Ticked) and failure is not None:  # a stall the watch found
            self._health.record_failure(failure.mode, failure.kind)
        if not self._ending:
            await self._carry_out(decision)

    def _feed_now(self, event: FailoverInput) -> Decision | None:
        """The policy's decision on ``event``, None when it is to carry on (nothing to do)."""
        decision = self._policy.handle(event)
        self._watch.set_deadline(self._policy.deadline_s)
        if type(decision) is DoNothing and decision.failure is None:
            return None
        return decision

    async def _carry_out(self, decision: Decision) -> None:
        failure = getattr(decision, "failure", None)
        if failure is not None:
            await self._emit(
                "provider.failed",
                provider=failure.mode,
                kind=failure.kind,
                detail=failure.detail,
                turn=failure.turn,
                attempt=failure.attempt,
            )
        for suppressed in getattr(decision, "suppressed", ()):
            await self._emit(
                "failover.suppressed",
                reason=suppressed.reason,
                detail=suppressed.detail,
                provider=suppressed.mode,
                turn=self._policy.turns_completed,
                **(
                    {}
                    if suppressed.remaining_ms is None
                    else {"remaining_ms": suppressed.remaining_ms}
                ),
            )
        if isinstance(decision, Connect):
            self._start(decision.mode, decision.attempt, greet=decision.greet, respond_now=False)
        elif isinstance(decision, SwitchTo | Reconnect):
            assert failure is not None
            self.report.switches += isinstance(decision, SwitchTo)
            # The caller-perceived gap runs from the end of the last agent audio.
            self._switched = (failure.mode, decision.mode, failure.turn, self._playout_end_s)
            if isinstance(decision, Reconnect):
                await self._emit("failover.reconnect", provider=decision.mode, turn=failure.turn)
            # Words lost with the failed provider are owed a reply even when it never
            # said the caller had finished (Gemini Live reports no end of speech), unless
            # the caller is still speaking (the next provider hears the rest).
            lost = self._words_lost and not self._idle.speaking and not decision.greet
            self._start(
                decision.mode,
                decision.attempt,
                greet=decision.greet,
                respond_now=decision.respond_now or lost,
            )
        elif isinstance(decision, GiveUp):
            assert failure is not None
            await self._give_up(failure.mode, failure.turn, decision.transfer_to)
        elif isinstance(decision, DoNothing) and decision.why:
            log.debug("failover: nothing to do", why=decision.why)

    async def _give_up(self, failed: str, turn: int, number: str | None) -> None:
        """Every option is spent: apologise in the local voice, then transfer or end."""
        assert self._slot is not None
        self._gave_up = True
        self._slot.stop()
        await self._emit("failover.exhausted", provider=failed, turn=turn, transfer_to=number)
        chunk = await self._apology()
        self._deferred[APOLOGY_ID] = (
            TransferAfterResponse(number) if number is not None else HangUpAfterResponse()
        )
        await self._to_transport.send(PlayAudio(chunk, APOLOGY_ID))
        await self._to_transport.send(MarkPlayback(f"response:{APOLOGY_ID}"))

    async def _report_consent(self, payload: dict[str, Any] | None) -> None:
        """``recording.consent``: what was announced (state, rule, line) and whether and
        when the caller heard it (the greeting's closing mark)."""
        if payload is not None:
            await self._emit("recording.consent", **payload)

    async def _emit(self, type_: str, **payload: Any) -> None:
        """Log an event; show the client the ones it displays (in order with the audio)."""
        event = await self._events.emit(type_, **payload)
        self._metrics.observe(type_, payload)
        if type_ in SHOWN_EVENT_TYPES and not self._transport_closed:
            try:
                await self._to_transport.send(ShowEvent(event))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._transport_closed = True

    async def _end_call(self, reason: str) -> None:
        if self._ending:
            return
        self._ending = True
        self.report.end_reason = reason
        await self._emit("call.ending", reason=reason)
        await self._to_transport.send(EndCall(reason))


def _after(action: TransferAfterResponse | HangUpAfterResponse | None) -> dict[str, str] | None:
    """What a tool's result defers until its response is heard, for the ``tool:result``
    event (and a replay's recorded tool): ``{"hangup": ""}``, ``{"transfer": number}``."""
    if isinstance(action, TransferAfterResponse):
        return {"transfer": action.number}
    if isinstance(action, HangUpAfterResponse):
        return {"hangup": ""}
    return None


def _tag(response_id: str, generation: int) -> str:
    """Response ids of later provider instances get ``#g<generation>`` (ids may repeat)."""
    return response_id if generation == 1 else f"{response_id}#g{generation}"


def _untag(response_id: str) -> str:
    return response_id.split("#g", 1)[0]


def _generation_of(response_id: str) -> int:
    _, _, generation = response_id.partition("#g")
    return int(generation) if generation.isdigit() else 1
