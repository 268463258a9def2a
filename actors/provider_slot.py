"""The supervisor's one live provider: start, replace, feed, and relay.

Each provider instance runs in a cancel scope of its own inside the
supervisor's nursery. Its outbox (:class:`ProviderOutbox`) tags everything it
says with its generation (:class:`FromProvider`) and puts it straight into the
supervisor's inbox, with no relay task in between (a hop that only forwards
costs a task switch per audio chunk); once the instance has been replaced,
what it still sends is dropped at once, so nothing it had in flight can reach
the caller. A provider that crashes or ends its session by itself is reported
as :class:`ProviderFailed` (``crash`` / ``disconnect``): the failure is itself
the message.

Caller audio waits in a bounded buffer (:data:`SWAP_BUFFER_MS`) until the
provider says it is ready, so what the caller says while a provider connects,
or while one replaces another, reaches the new one. Once ready, audio that
finds the provider's inbox full is dropped and counted rather than blocking
the supervisor: a provider that does not read its audio is stalled, and the
stall watch will say so.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, final, get_args

import structlog
import trio

from .context import EventSink
from .messages import (
    AgentAudio,
    CallerAudio,
    CallEvent,
    ConversationItem,
    FromProvider,
    Outbox,
    ProviderFailed,
    ProviderOutput,
    ToProvider,
    ToSupervisor,
)
from .tape import CallTape

log = structlog.get_logger("switchboard.provider_slot")

ProviderRun = Callable[
    [trio.MemoryReceiveChannel[ToProvider], Outbox, EventSink],
    Awaitable[None],
]
"""A provider actor: reads its inbox, writes to the supervisor, logs events."""

PlayNow = Callable[[int, AgentAudio], bool]
"""The supervisor's fast line for agent audio: ``play_now(generation, audio)`` runs
in the provider's task and handles the chunk at once, exactly as the inbox would
have, when nothing is queued ahead of it (True), or refuses (False: send it)."""

SWAP_BUFFER_MS = 2000.0
"""Caller audio kept while no provider is ready (oldest dropped first)."""
INBOX_SIZE = 64  # about a second of 20 ms frames
_PROVIDER_OUTPUT: Final = get_args(ProviderOutput)


@dataclass(frozen=True)
class ProviderStart:
    """How a provider instance starts (see :class:`~switchboard.actors.providers.ProviderSetup`).

    Attributes:
        conversation: the conversation so far, as text (empty for the first).
        greet: say the agent's greeting first (it has not been heard yet).
        respond_now: answer the caller's last turn at once (the previous
            provider failed before or during its answer).
        generation: the instance's number in the call (the failover policy's
            attempt: 1 for the first, growing with each start).
    """

    conversation: tuple[ConversationItem, ...] = ()
    greet: bool = True
    respond_now: bool = False
    generation: int = 1


@dataclass
class _Instance:
    generation: int
    mode: str
    scope: trio.CancelScope
    inbox: trio.MemorySendChannel[ToProvider]
    ready: bool = False


class ProviderSlot:
    """Runs one provider instance at a time in ``nursery`` (see the module docstring)."""

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        to_supervisor: trio.MemorySendChannel[ToSupervisor],
        events: EventSink,
        play_now: PlayNow | None = None,
        tape: CallTape | None = None,
    ) -> None:
        self._nursery = nursery
        self._tape = tape if tape is not None and tape.enabled else None
        self._to_supervisor = to_supervisor
        self._play_now = play_now
        self._events = events
        self._live: _Instance | None = None
        self._generation = 0
        self._buffer: deque[CallerAudio] = deque()
        self._buffered_ms = 0.0
        self.dropped_frames = 0

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def mode(self) -> str | None:
        return self._live.mode if self._live is not None else None

    @property
    def ready(self) -> bool:
        return self._live is not None and self._live.ready

    def start(
        self, mode: str, build: Callable[[], ProviderRun], *, generation: int | None = None
    ) -> int:
        """Stop the live provider (if any); build and start the next; returns its generation.

        ``build`` runs inside the new instance's task, so an adapter that
        cannot even be built is reported like any crash (:class:`ProviderFailed`).

        ``generation`` (the failover policy's attempt number) must grow with each
        start; by default it is the previous one plus 1.
        """
        self.stop()
        if generation is not None and generation <= self._generation:
            raise ValueError(f"generation {generation} is not after {self._generation}")
        self._generation = generation if generation is not None else self._generation + 1
        send, receive = trio.open_memory_channel[ToProvider](INBOX_SIZE)
        instance = _Instance(self._generation, mode, trio.CancelScope(), send)
        self._live = instance
        self._nursery.start_soon(self._run_instance, instance, build, receive)
        return instance.generation

    def stop(self) -> None:
        """Cancel the live provider; its late messages are dropped by generation."""
        if self._live is not None:
            self._live.scope.cancel()
            self._live.inbox.close()
            self._live = None

    def is_current(self, generation: int) -> bool:
        return self._live is not None and generation == self._live.generation

    def mark_ready(self) -> None:
        """The live provider has its session: hand it the audio kept meanwhile."""
        if self._live is None or self._live.ready:
            return
        self._live.ready = True
        while self._buffer:
            self._offer(self._buffer.popleft())
        self._buffered_ms = 0.0

    def hear(self, audio: CallerAudio) -> None:
        """Give the live provider a frame of caller audio, without waiting.

        Kept in the swap buffer while no provider is ready; dropped and counted
        (:attr:`dropped_frames`) when the provider's inbox is full.
        """
        live = self._live
        if live is None or not live.ready:
            self._keep(audio)
        else:
            self._offer(audio)

    async def send(self, message: ToProvider) -> None:
        """Give the live provider ``message`` (caller audio as :meth:`hear` does)."""
        live = self._live
        if isinstance(message, CallerAudio):
            self.hear(message)
            await trio.lowlevel.checkpoint()
            return
        if live is not None:
            if self._tape is not None:
                self._tape.instance_input(f"{live.mode}#{live.generation}", message)
            try:
                await live.inbox.send(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # replaced meanwhile

    def _keep(self, audio: CallerAudio) -> None:
        self._buffer.append(audio)
        self._buffered_ms += audio.chunk.duration_ms
        while self._buffered_ms > SWAP_BUFFER_MS and len(self._buffer) > 1:
            self._buffered_ms -= self._buffer.popleft().chunk.duration_ms
            self.dropped_frames += 1

    def _offer(self, audio: CallerAudio) -> None:
        assert self._live is not None
        try:
            self._live.inbox.send_nowait(audio)
        except trio.WouldBlock:
            self.dropped_frames += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the provider has ended; its failure is on its way

    async def aclose(self) -> None:
        self.stop()

    async def _run_instance(
        self,
        instance: _Instance,
        build: Callable[[], ProviderRun],
        inbox: trio.MemoryReceiveChannel[ToProvider],
    ) -> None:
        source = f"{instance.mode}#{instance.generation}"
        outbox = ProviderOutbox(
            self, instance.generation, self._to_supervisor, self._play_now, self._tape, source
        )
        events = self._events.clone()
        if self._tape is not None:
            events = TapedEventSink(events, self._tape, source)
        with instance.scope:
            try:
                await build()(inbox, outbox, events)
                failure = ProviderFailed(instance.mode, "disconnect", "the provider ended")
            except Exception as exc:  # the failure is itself the message
                log.exception("provider crashed", provider=instance.mode)
                failure = ProviderFailed(instance.mode, "crash", f"{type(exc).__name__}: {exc}")
            finally:
                with trio.CancelScope(shield=True):
                    await events.aclose()
            await outbox.send(failure)


@final
class ProviderOutbox:
    """One provider instance's line to the supervisor (implements :class:`Outbox`).

    ``send`` tags the message with the instance's generation and puts it in
    the supervisor's inbox (waiting while the inbox is full); agent audio is
    first offered to ``play_now`` (the supervisor's fast line, see
    :data:`PlayNow`), and sent through the inbox only when refused. Once the
    instance has been replaced, or the supervisor has closed its inbox, the
    message is dropped; a message that is not a :data:`ProviderOutput` is
    logged and dropped. On a recorded call every message is put on the tape first
    (:meth:`~.tape.CallTape.instance_output`), as ``source``.
    """

    __slots__ = ("_channel", "_generation", "_play_now", "_slot", "_source", "_tape")

    def __init__(
        self,
        slot: ProviderSlot,
        generation: int,
        channel: trio.MemorySendChannel[ToSupervisor],
        play_now: PlayNow | None = None,
        tape: CallTape | None = None,
        source: str = "",
    ) -> None:
        self._slot = slot
        self._generation = generation
        self._channel = channel
        self._play_now = play_now
        self._tape = tape
        self._source = source

    async def send(self, message: ProviderOutput) -> None:
        if self._tape is not None:
            self._tape.instance_output(self._source, message)
        if (
            type(message) is AgentAudio
            and self._play_now is not None
            and self._play_now(self._generation, message)
        ):
            return  # played (or dropped as the supervisor would): not a checkpoint
        if not self._slot.is_current(self._generation):
            await trio.lowlevel.checkpoint()  # replaced: a cancellation point all the same
            return
        if not isinstance(message, _PROVIDER_OUTPUT):
            log.error("provider sent a message it may not send", message=repr(message))
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._channel.send(FromProvider(self._generation, message))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the supervisor has ended the call


class TapedEventSink(EventSink):
    """A provider instance's event sink on a recorded call: each event it logs is also
    put on the tape (:meth:`~.tape.CallTape.instance_event`), so a replay's recorded
    provider logs it again at the same offset."""

    def __init__(self, inner: EventSink, tape: CallTape, source: str) -> None:
        super().__init__(inner.ctx, inner.channel)
        self._tape = tape
        self._source = source

    async def emit(self, type_: str, **payload: Any) -> CallEvent:
        self._tape.instance_event(self._source, type_, payload)
        return await super().emit(type_, **payload)

    def clone(self) -> EventSink:
        return TapedEventSink(super().clone(), self._tape, self._source)
