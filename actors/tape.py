"""The call's tape: what a recording keeps, taken as plain appends off the audio path.

Every actor reaches the tape through ``ctx.tape``. A call that is not recorded
has the base :class:`CallTape`, whose methods do nothing. A recorded call has a
:class:`RecordingTape`: each method appends one
:class:`~switchboard.codecs.recording_format.Record` stamped with the call's
clock (ms since the call started) and returns; no I/O, no await, no copy of
the bytes. The call's recording writer takes the records every so often
(:meth:`RecordingTape.take`), seals them and writes them, in its own task.

Who calls what:

* the transports: :meth:`~CallTape.caller` for each frame of caller audio as
  received, :meth:`~CallTape.agent` for each frame of agent audio as sent,
  :meth:`~CallTape.agent_cleared` when the caller's player drops what it had
  not played (barge-in);
* the provider adapters: :meth:`~CallTape.provider` for each message a
  provider instance sent, as it arrived;
* the supervisor and its provider slot: :meth:`~CallTape.instance_started`,
  :meth:`~CallTape.instance_output`, :meth:`~CallTape.instance_event` and
  :meth:`~CallTape.instance_input` for what each provider instance told the call
  and was told (:mod:`.instance_record`): what the
  replay's recorded provider plays back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from switchboard.codecs.recording_format import Kind, Record, pack_provider_event

from .instance_record import pack_event, pack_input, pack_output, pack_started

if TYPE_CHECKING:
    from .messages import ProviderOutput


class CallTape:
    """The tape of a call that is not recorded: nothing is kept."""

    enabled = False
    keeps_audio = False

    def caller(self, data: bytes) -> None:
        """Caller audio as received (the call's caller format)."""

    def agent(self, data: bytes) -> None:
        """Agent audio as sent to the caller (the call's caller format)."""

    def agent_cleared(self) -> None:
        """The caller's player dropped the agent audio it had not played yet."""

    def provider(self, source: str, raw: str | bytes) -> None:
        """A message provider instance ``source`` sent, as it arrived."""

    def instance_started(self, source: str, *, greet: bool, respond_now: bool) -> None:
        """The supervisor started provider instance ``source`` (``<mode>#<generation>``)."""

    def instance_output(self, source: str, message: ProviderOutput) -> None:
        """Provider instance ``source`` sent the supervisor ``message``."""

    def instance_event(self, source: str, type_: str, payload: Any) -> None:
        """Provider instance ``source`` logged event ``type_`` with ``payload``."""

    def instance_input(self, source: str, message: object) -> None:
        """The supervisor sent provider instance ``source`` ``message`` (not caller audio)."""


class RecordingTape(CallTape):
    """The tape of a recorded call: records in memory until the writer takes them.

    ``now_ms`` is the call's clock (``CallContext.now_ms``). ``keep_audio``
    False (the agent records no audio) keeps provider events only.
    """

    enabled = True

    def __init__(self, now_ms: Callable[[], float], *, keep_audio: bool = True) -> None:
        self._now_ms = now_ms
        self.keeps_audio = keep_audio
        self._records: list[Record] = []

    def caller(self, data: bytes) -> None:
        if self.keeps_audio:
            self._records.append(Record(Kind.CALLER_AUDIO, self._now_ms(), data))

    def agent(self, data: bytes) -> None:
        if self.keeps_audio:
            self._records.append(Record(Kind.AGENT_AUDIO, self._now_ms(), data))

    def agent_cleared(self) -> None:
        if self.keeps_audio:
            self._records.append(Record(Kind.AGENT_CLEARED, self._now_ms(), b""))

    def provider(self, source: str, raw: str | bytes) -> None:
        self._records.append(
            Record(Kind.PROVIDER_EVENT, self._now_ms(), pack_provider_event(source, raw))
        )

    def instance_started(self, source: str, *, greet: bool, respond_now: bool) -> None:
        data = pack_started(source, greet=greet, respond_now=respond_now)
        self._records.append(Record(Kind.PROVIDER_OUTPUT, self._now_ms(), data))

    def instance_output(self, source: str, message: ProviderOutput) -> None:
        data = pack_output(source, message)
        self._records.append(Record(Kind.PROVIDER_OUTPUT, self._now_ms(), data))

    def instance_event(self, source: str, type_: str, payload: Any) -> None:
        data = pack_event(source, type_, payload)
        self._records.append(Record(Kind.PROVIDER_OUTPUT, self._now_ms(), data))

    def instance_input(self, source: str, message: object) -> None:
        data = pack_input(source, message)
        self._records.append(Record(Kind.PROVIDER_OUTPUT, self._now_ms(), data))

    def take(self) -> list[Record]:
        """The records kept since the last call, in order; the tape starts empty again."""
        records, self._records = self._records, []
        return records

    @property
    def pending(self) -> int:
        """How many records wait for the writer."""
        return len(self._records)
