"""The recorded provider: a provider instance played back from a recorded call's tape.

A replay (``switchboard replay``) stands one of these in for each provider
instance the call had. It says what the instance said (every
:data:`~switchboard.actors.messages.ProviderOutput`, its failures included)
and logs what it logged, on the call's clock (Trio's ``MockClock`` in a
replay). A stall is the absence of output, so the supervisor's watch finds it
again; a 5xx at connect or a drop is the recorded
:class:`~switchboard.actors.messages.ProviderFailed`.

When each thing is said: as long after its cause as on the recording. A
cause is an *anchor*: the instance's start; what it heard of the caller
(:data:`CALLER_DRIVEN`: speech started or stopped, a transcript), which
happens when the caller spoke, at its recorded time on the call's clock
whenever the instance started; and what the supervisor sent it. Everything
else comes at its recorded distance from the last anchor. Replaying the call
as it was, every time is the recorded one; in a what-if that starts an
instance earlier (a shorter stall timeout), its answer comes as much earlier
while the caller's next words still come when the caller said them.

Inputs: caller audio is read and dropped (the recording holds what the
provider made of it). What the recording says the instance was sent besides
audio (a tool result, a truncation, an answer owed) is waited for before what
the instance said after it, so an answer never comes before its question, even
at the same instant; one that never comes (a what-if) is given up on
:data:`INPUT_GRACE_S` after it was due.

After its last recorded output it waits until it is replaced or the call
ends, as the recorded instance's slot would have (its own end was recorded as
the failure the slot reported).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from ..context import EventSink
from ..instance_record import InstanceEvent, InstanceInput, InstanceOutput
from ..messages import (
    CallerAudio,
    CallerTranscript,
    Outbox,
    SpeechHeard,
    SpeechStarted,
    SpeechStopped,
    ToProvider,
)

__all__ = ["CALLER_DRIVEN", "INPUT_GRACE_S", "RecordedProvider", "TimedEntry"]

CALLER_DRIVEN = (SpeechStarted, SpeechStopped, SpeechHeard, CallerTranscript)
"""What a provider says about the caller's speech: it happens when the caller spoke."""

INPUT_GRACE_S = 5.0
"""How long past its recorded time a recorded input is waited for."""


@dataclass(frozen=True, slots=True)
class TimedEntry:
    """One thing the instance did, ``offset_ms`` after it was started."""

    offset_ms: float
    entry: InstanceOutput | InstanceEvent | InstanceInput


class RecordedProvider:
    """A provider actor (:data:`~switchboard.actors.supervisor.ProviderRun`) playing
    ``entries`` (in recorded order, offsets not decreasing) from the moment it is run.

    ``recorded_start_s`` is when the instance started on the recording, ``t0`` the call's
    start on this run's clock (seconds, ``trio.current_time()``), so that what the
    instance heard of the caller comes at ``t0 + recorded_start_s + offset``.
    """

    def __init__(
        self, entries: Sequence[TimedEntry], *, recorded_start_s: float, t0: float
    ) -> None:
        self._entries = entries
        self._recorded_start_s = recorded_start_s
        self._t0 = t0

    async def __call__(
        self,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: Outbox,
        events: EventSink,
    ) -> None:
        inputs = _Inputs()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inputs.drain, inbox)
            anchor_s, anchor_offset_s = trio.current_time(), 0.0  # now, and on the recording
            expected: Counter[str] = Counter()
            for timed in self._entries:
                offset_s = timed.offset_ms / 1000.0
                entry = timed.entry
                due = anchor_s + (offset_s - anchor_offset_s)
                if isinstance(entry, InstanceInput):
                    expected[entry.type] += 1
                    with trio.move_on_at(due + INPUT_GRACE_S):
                        await inputs.wait(entry.type, expected[entry.type])
                    anchor_s, anchor_offset_s = trio.current_time(), offset_s
                    continue
                if isinstance(entry, InstanceOutput) and isinstance(entry.message, CALLER_DRIVEN):
                    due = self._t0 + self._recorded_start_s + offset_s
                    anchor_s, anchor_offset_s = max(due, trio.current_time()), offset_s
                if due > trio.current_time():  # entries of one instant: no step each
                    await trio.sleep_until(due)
                if isinstance(entry, InstanceOutput):
                    await outbox.send(entry.message)
                else:
                    await events.emit(entry.type, **entry.payload)
            await trio.sleep_forever()


class _Inputs:
    """Counts the messages other than caller audio the instance was sent, by class."""

    def __init__(self) -> None:
        self._seen: Counter[str] = Counter()
        self._changed = trio.Event()

    async def drain(self, inbox: trio.MemoryReceiveChannel[ToProvider]) -> None:
        """Read what the supervisor sends (so its sends never wait); count the inputs."""
        async for message in inbox:
            while True:  # what has queued up, without a checkpoint per caller frame
                if type(message) is not CallerAudio:
                    self._seen[type(message).__name__] += 1
                    self._changed.set()
                    self._changed = trio.Event()
                try:
                    message = inbox.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break

    async def wait(self, type_name: str, count: int) -> None:
        """Until ``count`` messages of class ``type_name`` have come."""
        while self._seen[type_name] < count:
            await self._changed.wait()
