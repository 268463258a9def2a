"""Every message the actors of a call exchange, as frozen dataclasses.

Naming (DESIGN.md): nouns for data (:class:`AudioChunk`), past tense for what
happened (:class:`CallerHungUp`), imperatives for commands
(:class:`ClearPlayback`). Times are in milliseconds since the call started,
on the call's monotonic clock (``trio.current_time()``), so a replay under
Trio's MockClock reproduces them.

Who sends what::

    transport  -> provider   : CallerAudio, through the supervisor's line (HearCaller),
                               in the transport's own task: the supervisor decides where
                               it goes without a hop of its own
    transport  -> supervisor : CallerDtmf, CallerText, CancelResponse, PlaybackMarked,
                               CallerHungUp, TransportFailed
    transport  -> supervisor : PlaybackCleared (the answer to ClearPlayback)
    supervisor -> transport  : PlayAudio, MarkPlayback, ClearPlayback, ShowEvent, EndCall
    supervisor -> provider   : CallerAudio, CallerText, ToolResult, TruncateResponse, RespondNow
    provider   -> supervisor : ProviderReady, SpeechStarted, SpeechStopped, CallerTranscript,
                               ResponseStarted, AgentAudio, AgentTranscript, ResponseDone,
                               ToolCallRequested, ProviderFailed, ProviderWorking
                               (each wrapped in FromProvider by the supervisor's relay)
    supervisor -> tools      : ToolCallRequested, TransferCall
    tools      -> supervisor : ToolResult
    everyone   -> logger     : CallEvent
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Encoding = Literal["pcmu", "pcm16"]
"""``pcmu``: G.711 mu-law, 1 byte per sample; ``pcm16``: little-endian PCM16, 2 bytes."""


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Mono audio: ``data`` in ``encoding`` at ``sample_rate`` Hz."""

    data: bytes
    encoding: Encoding
    sample_rate: int

    def __post_init__(self) -> None:
        if self.encoding not in ("pcmu", "pcm16"):
            raise ValueError(f"encoding must be 'pcmu' or 'pcm16', got {self.encoding!r}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.encoding == "pcm16" and len(self.data) % 2:
            raise ValueError("pcm16 audio must have an even number of bytes")

    @property
    def samples(self) -> int:
        return len(self.data) if self.encoding == "pcmu" else len(self.data) // 2

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.samples / self.sample_rate


# -- transport -> supervisor: what the caller did ----------------------------


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """Caller audio; ``offset_ms`` is where it starts on the caller's audio timeline."""

    chunk: AudioChunk
    offset_ms: float


@dataclass(frozen=True, slots=True)
class CallerDtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class PlaybackMarked:
    """The caller's side confirmed it played everything sent before mark ``name``."""

    name: str


@dataclass(frozen=True, slots=True)
class PlaybackCleared:
    """Queued agent audio was dropped (barge-in); what the caller heard of it.

    ``heard_ms`` is how much of response ``response_id``'s audio had played
    when it was cleared (Twilio: the last mark echoed before the ``clear``),
    ``sent_ms`` how much had been sent. ``response_id`` is None when nothing
    was playing.
    """

    response_id: str | None
    heard_ms: float
    sent_ms: float


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    reason: str


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The caller's connection broke or sent something unusable."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class CallerText:
    """The caller typed ``text``: a caller turn, answered like a spoken one.

    From the browser's ``{"event": "text"}`` and ``/v1/realtime``'s
    ``conversation.item.create`` (a user message with ``input_text``). The
    supervisor passes it to the provider, which adds it its own way (OpenAI
    Realtime: ``conversation.item.create`` then ``response.create``; Gemini
    Live: ``clientContent`` with ``turnComplete``; a pipeline: a caller turn).
    """

    text: str


@dataclass(frozen=True, slots=True)
class CancelResponse:
    """The caller's client asked to stop the agent's response in progress
    (``/v1/realtime``'s ``response.cancel``); the provider's response is stopped too."""


# -- supervisor -> transport: commands ---------------------------------------


@dataclass(frozen=True, slots=True)
class PlayAudio:
    chunk: AudioChunk
    response_id: str


@dataclass(frozen=True, slots=True)
class MarkPlayback:
    """Ask to be told (:class:`PlaybackMarked`) once the audio sent so far has played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearPlayback:
    """Drop agent audio queued but not yet played (barge-in)."""


@dataclass(frozen=True, slots=True)
class ShowEvent:
    """A call event the caller's client may show (browser timeline, OpenAI-compatible events).

    Sent in order with the audio, so a client sees ``response.done`` after the
    response's last audio. The types sent are :data:`SHOWN_EVENT_TYPES`; a
    phone transport ignores them.
    """

    event: CallEvent


SHOWN_EVENT_TYPES = frozenset(
    {
        "speech.started",
        "speech.stopped",
        "turn:user",
        "turn:agent",
        "response.start",
        "response.done",
        "tool:call",
        "tool:result",
        "barge_in",
        "provider.failed",
        "failover.switch",
        "failover.exhausted",
        "call.ending",
    }
)


@dataclass(frozen=True, slots=True)
class EndCall:
    """Hang up once the audio already sent has played."""

    reason: str


@dataclass(frozen=True, slots=True)
class TruncateResponse:
    """The caller barged in: only the first ``heard_ms`` of the response's audio was heard.

    The provider stops the response (if still running) and cuts its own record
    of the answer to what was heard (OpenAI Realtime:
    ``conversation.item.truncate`` with ``audio_end_ms``).
    """

    response_id: str
    heard_ms: float


# -- the conversation so far (what a provider starts from after a switch) -------


@dataclass(frozen=True, slots=True)
class CallerSaid:
    """A finished caller turn, as text."""

    text: str


@dataclass(frozen=True, slots=True)
class AgentSaid:
    """An agent response as heard (cut short if the caller barged in)."""

    text: str
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class ToolRan:
    """A tool call that was executed, with its result; it must not run again."""

    call_id: str
    name: str
    arguments: Mapping[str, Any]
    output: str
    ok: bool = True


@dataclass(frozen=True, slots=True)
class CallerUnheard:
    """The caller spoke, but no transcript of it reached the conversation: the
    provider that heard them failed first. The next provider asks them to say it
    again (``repeat``: what to say, the agent's ``no_match_reply``) rather than
    answer a turn it does not have, or greet the caller a second time."""

    repeat: str


ConversationItem = CallerSaid | AgentSaid | ToolRan | CallerUnheard

UNHEARD_NOTE = "[The caller said something here that was lost on the line: nobody heard it.]"
"""How a :class:`CallerUnheard` turn reads in a model's history (in place of the text)."""


def last_unheard(conversation: tuple[ConversationItem, ...]) -> CallerUnheard | None:
    """The conversation's last item when it is a :class:`CallerUnheard` (a repeat is owed)."""
    last = conversation[-1] if conversation else None
    return last if isinstance(last, CallerUnheard) else None


# -- provider -> supervisor ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderReady:
    provider: str


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Voice activity detected on the caller's side (the barge-in signal)."""

    offset_ms: float


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    offset_ms: float


@dataclass(frozen=True, slots=True)
class SpeechHeard:
    """The provider heard the caller speaking at ``offset_ms`` of the caller's audio
    (a piece of input transcription, Gemini Live's only sign of caller speech).

    It marks no turn boundary and is not a barge-in signal: it keeps the call's
    idle timer from running out while the caller talks.
    """

    offset_ms: float


@dataclass(frozen=True, slots=True)
class CallerTranscript:
    """What the caller said in one utterance (audio from ``start_ms`` to ``end_ms``)."""

    text: str
    start_ms: float
    end_ms: float
    intent: str | None = None
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    """The agent begins a response; ``greeting`` responses do not answer a caller turn."""

    response_id: str
    greeting: bool = False


@dataclass(frozen=True, slots=True)
class AgentAudio:
    chunk: AudioChunk
    response_id: str


@dataclass(frozen=True, slots=True)
class AgentTranscript:
    text: str
    response_id: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class ToolCallRequested:
    call_id: str
    name: str
    arguments: Mapping[str, Any]
    response_id: str


FailureKind = Literal["http_5xx", "error_event", "disconnect", "stall", "connect_timeout", "crash"]


@dataclass(frozen=True, slots=True)
class ProviderFailed:
    provider: str
    kind: FailureKind
    detail: str


@dataclass(frozen=True, slots=True)
class ProviderWorking:
    """The provider is still working on the answer it owes (not stalled).

    ``activity``: what it is doing (the local provider: ``recognizing`` or
    ``synthesizing``, possibly queued behind other calls' work);
    ``elapsed_ms``: for how long. The supervisor counts it as progress
    (:class:`~switchboard.actors.failover.inputs.ProgressReported`).
    """

    activity: str
    elapsed_ms: float


ProviderOutput = (
    ProviderReady
    | SpeechStarted
    | SpeechStopped
    | SpeechHeard
    | CallerTranscript
    | ResponseStarted
    | AgentAudio
    | AgentTranscript
    | ResponseDone
    | ToolCallRequested
    | ProviderFailed
    | ProviderWorking
)
"""Everything a provider sends the supervisor."""


@dataclass(frozen=True, slots=True)
class FromProvider:
    """A provider's message as the supervisor receives it: tagged with the provider instance.

    ``generation`` counts the provider instances of the call (1 for the first,
    +1 per switch or reconnect), so a message from a provider that has been
    replaced is recognised and dropped.
    """

    generation: int
    message: ProviderOutput


# -- tools ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HangUpAfterResponse:
    """A deferred action: hang up once the response's audio has been heard."""


@dataclass(frozen=True, slots=True)
class TransferAfterResponse:
    """A deferred action: transfer to ``number`` once the response's audio has been heard."""

    number: str


AfterResponse = HangUpAfterResponse | TransferAfterResponse


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's answer; ``output`` is text the agent can speak or reason over."""

    call_id: str
    name: str
    ok: bool
    output: str
    response_id: str
    after_response: AfterResponse | None = None
    pending: bool = False
    """An acknowledgement, not the result: the tool is still running (slower than
    its ``ack_ms``, or ``async``); ``output`` tells the agent to say it is checking.
    The result follows as a follow-up (:class:`RespondNow`)."""
    error: str | None = None
    """On failure, its kind (:class:`~.tools.invocation.ToolOutcome`'s ``error``)."""
    detail: Mapping[str, Any] = field(default_factory=dict)
    """More for the ``tool:result`` event (JSON data: HTTP status, address, ...)."""


@dataclass(frozen=True, slots=True)
class TransferCall:
    """Carry out a transfer now (the agent's announcement has been heard)."""

    number: str
    call_sid: str | None


@dataclass(frozen=True, slots=True)
class RespondNow:
    """Respond to the caller now about something the runtime learned after the
    provider's last response (a transfer it announced did not go through).

    ``note``: what a model is told (it phrases the response); ``say``: what a
    provider without a model (the local intent policy) says as it is.
    """

    note: str
    say: str


@dataclass(frozen=True, slots=True)
class TransferFailed:
    """A transfer to ``number`` could not be carried out: the call was not redirected.

    ``reason``: ``no_credentials`` (no Twilio REST credentials),
    ``not_a_phone_call`` (no call SID: a browser or API call) or ``rest_error``
    (Twilio refused or did not answer); ``detail`` says more.
    """

    number: str
    reason: str
    detail: str


# -- everyone -> event logger ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One entry of the call's event log; ``seq`` is given by the logger."""

    type: str
    t_ms: float
    payload: Mapping[str, Any] = field(default_factory=dict)


ToSupervisor = (
    CallerAudio
    | CallerDtmf
    | CallerText
    | CancelResponse
    | PlaybackMarked
    | PlaybackCleared
    | CallerHungUp
    | TransportFailed
    | ProviderOutput
    | FromProvider
    | ToolResult
    | TransferFailed
)
ToTransport = PlayAudio | MarkPlayback | ClearPlayback | ShowEvent | EndCall


class Outbox(Protocol):
    """A provider's line to the supervisor (``provider_slot.ProviderOutbox``).

    ``send`` waits while the supervisor's inbox is full; what a provider that
    has been replaced sends is dropped.
    """

    async def send(self, message: ProviderOutput) -> None: ...


HearCaller = Callable[[CallerAudio], None]
"""The supervisor's line for caller audio (``Supervisor.hear``), called by the transport
for every frame. It never blocks and never switches tasks: the frame goes straight into
the live provider's inbox (or the swap buffer while none is ready); a frame the provider
has no room for is dropped and counted (:class:`~switchboard.actors.provider_slot.ProviderSlot`).
Caller audio is the one message that only passes through the supervisor, so it takes no
channel hop of its own there."""
ToProvider = CallerAudio | CallerText | ToolResult | TruncateResponse | RespondNow
ToTools = ToolCallRequested | TransferCall
