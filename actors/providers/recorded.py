"""The recorded provider: a provider instance played back from a recorded call's tape.

A replay (``switchboard replay``) stands one of these in for each provider
instance the call had. It says what the instance said (every
:data:`~switchboard.actors.messages.ProviderOutput`, its failures included)
and logs what it logged, each at the same offset from the instance's start as
on the recording, on the call's clock (Trio's ``MockClock`` in a replay). Its
inputs (caller audio, tool results, truncations) are read and dropped: the
recording already holds the answers they got. A stall is the absence of
output, so the supervisor's watch finds it again; a 5xx at connect or a drop
is the recorded :class:`~switchboard.actors.messages.ProviderFailed`.

After its last recorded output it waits until it is replaced or the call
ends, as the recorded instance's slot would have (its own end was recorded as
the failure the slot reported).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import trio

from ..context import EventSink
from ..instance_record import InstanceEvent, InstanceOutput
from ..messages import Outbox, ToProvider

__all__ = ["RecordedProvider", "TimedEntry"]


@dataclass(frozen=True, slots=True)
class TimedEntry:
    """One thing the instance did, ``offset_ms`` after it was started."""

    offset_ms: float
    entry: InstanceOutput | InstanceEvent


class RecordedProvider:
    """A provider actor (:data:`~switchboard.actors.supervisor.ProviderRun`) playing
    ``entries`` (in recorded order, offsets not decreasing) from the moment it is run."""

    def __init__(self, entries: Sequence[TimedEntry]) -> None:
        self._entries = entries

    async def __call__(
        self,
        inbox: trio.MemoryReceiveChannel[ToProvider],
        outbox: Outbox,
        events: EventSink,
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, inbox)
            start = trio.current_time()
            for timed in self._entries:
                await trio.sleep_until(start + timed.offset_ms / 1000.0)
                entry = timed.entry
                if isinstance(entry, InstanceOutput):
                    await outbox.send(entry.message)
                else:
                    await events.emit(entry.type, **entry.payload)
            await trio.sleep_forever()


async def _drain(inbox: trio.MemoryReceiveChannel[ToProvider]) -> None:
    """Read what the supervisor sends and drop it, so its sends never wait."""
    async for _ in inbox:
        pass
