"""The local provider's recognition waits in shared speech workers: queueing is not a stall.

Whole calls through the real call nursery (supervisor, failover policy, local
provider, fake Twilio) on Trio's MockClock. The speech service is a fake
whose recognition takes as long as a test says, in virtual time: a decode
queued behind other calls' work (slow but working) must be answered, not
failed over; a recognizer that never answers (hung) must still be failed
over, within ``progress_limit_ms``; a worker that dies is a ``ProviderFailed``
of kind ``crash``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import trio
from call_harness import FakeTwilio, MemoryStore, transport_for

from switchboard.actors.context import AudioFormat, CallContext
from switchboard.actors.local.assets import AssetRegistry
from switchboard.actors.local.speech import Grammar, Recognition, SpeechWorkerLost
from switchboard.actors.messages import AudioChunk
from switchboard.codecs import Pcm16, ulaw_encode
from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.call import CallResources, run_call
from switchboard.orchestrator.store import EventRow
from switchboard.testing.speech import speak

EXAMPLE = Path(__file__).parent.parent / "examples" / "receptionist.yaml"
AGENT = parse_agent_yaml(EXAMPLE.read_text(), str(EXAMPLE))  # mode local, fallback [local]
SETTINGS = AGENT.failover
LINE = "what are your opening hours"
SPEAK_AT_S = 3.0
HEARD = Recognition(LINE, "hours", 0.99, 0.0)


@dataclass
class FakeSpeech:
    """A :class:`~switchboard.actors.local.speech.SpeechService` in virtual time.

    Recognition of an utterance takes ``decode_s`` after its end (as if queued
    behind other calls' decodes); ``lost``: the worker is gone instead.
    Synthesis is instant: 20 ms of silence per character.
    """

    decode_s: float
    lost: bool = False
    finished: list[float] = field(default_factory=list)  # when recognitions were answered

    def open_session(self, grammar: Grammar) -> FakeSession:
        return FakeSession(self)

    async def synthesize(self, text: str, voice: str, fmt: AudioFormat) -> AudioChunk:
        samples = fmt.sample_rate * len(text) // 50
        if fmt.encoding == "pcmu":
            return AudioChunk(b"\xff" * samples, "pcmu", fmt.sample_rate)
        return AudioChunk(bytes(2 * samples), "pcm16", fmt.sample_rate)


@dataclass
class FakeSession:
    speech: FakeSpeech

    def open_stream(self, sample_rate: int, *, speech_start_ms: float = 0.0) -> FakeStream:
        return FakeStream(self.speech)

    def close(self) -> None:
        pass


@dataclass
class FakeStream:
    speech: FakeSpeech

    async def feed(self, pcm: Pcm16) -> None:
        if self.speech.lost:
            raise SpeechWorkerLost("speech worker 0 died (test)")

    async def guess(self, last: Pcm16 | None = None) -> Recognition:
        return await self.finish(last)

    async def finish(self, last: Pcm16 | None = None) -> Recognition:
        await trio.sleep(self.speech.decode_s)
        if self.speech.lost:
            raise SpeechWorkerLost("speech worker 0 died (test)")
        self.speech.finished.append(trio.current_time())
        return HEARD

    def abandon(self) -> None:
        pass


@dataclass
class Call:
    ctx: CallContext
    twilio: FakeTwilio
    store: MemoryStore
    spoke_until_s: float  # when the caller's line ended

    def events(self, type_: str) -> list[EventRow]:
        rows = [self.store.events[s] for s in sorted(self.store.events)]
        return [e for e in rows if e.type == type_]

    def at(self, event: EventRow) -> float:
        return self.ctx.t0 + event.t_ms / 1000


async def place_call(speech: FakeSpeech, *, hang_up_at: float) -> Call:
    """The caller says LINE at SPEAK_AT_S (20 ms frames), hangs up at ``hang_up_at``."""
    ctx = CallContext(
        uuid4(), uuid4(), uuid4(), AGENT, t0=trio.current_time(), call_sid="CA1", stream_sid="MZ1"
    )
    twilio, store = FakeTwilio(), MemoryStore()
    assets = AssetRegistry(speech)
    res = CallResources(store=store, assets=assets)  # type: ignore[arg-type]
    line = ulaw_encode(speak(LINE, 8000))
    line += b"\xff" * (-len(line) % 160)
    first = round(SPEAK_AT_S / 0.02)
    encoder = wire.InboundEncoder("MZ1", "CA1", "AC1")

    async def caller() -> None:
        for frame in range(round(hang_up_at / 0.02)):
            offset = (frame - first) * 160
            payload = line[offset : offset + 160] if 0 <= offset < len(line) else b"\xff" * 160
            await twilio.to_server.send(encoder.media(payload))
            await trio.sleep(0.02)
        await twilio.to_server.send(encoder.stop())

    async with trio.open_nursery() as nursery:
        twilio.nursery = nursery
        nursery.start_soon(caller)
        await run_call(ctx, transport_for(ctx, twilio), res)
        nursery.cancel_scope.cancel()
    return Call(ctx, twilio, store, ctx.t0 + SPEAK_AT_S + len(line) / 8000)


async def test_a_recognition_queued_longer_than_the_stall_timeout_is_answered_not_failed_over(
    autojump_clock: trio.abc.Clock,
) -> None:
    decode_s = 2 * SETTINGS.stall_timeout_ms / 1000  # twice the stall budget, within the limit
    assert decode_s < SETTINGS.progress_limit_ms / 1000 - 1.0
    speech = FakeSpeech(decode_s)
    call = await place_call(speech, hang_up_at=16.0)
    assert not call.events("provider.failed")
    assert not call.events("failover.switch")
    (recognized,) = speech.finished
    # The caller was answered: the hours reply, heard right after the slow recognition.
    assert any(e.payload["text"].startswith("We are open") for e in call.events("turn:agent"))
    _, answered_at = call.twilio.heard_again_after(recognized)
    assert answered_at - recognized < 0.5
    # ... and the wait really was longer than the stall timeout after the caller stopped.
    assert answered_at - call.spoke_until_s > SETTINGS.stall_timeout_ms / 1000


async def test_a_recognizer_that_never_answers_is_failed_over_at_the_progress_limit(
    autojump_clock: trio.abc.Clock,
) -> None:
    speech = FakeSpeech(decode_s=600.0)  # hung, while its provider keeps reporting progress
    call = await place_call(speech, hang_up_at=24.0)
    failed = call.events("provider.failed")[0]
    assert failed.payload["provider"] == "local"
    assert failed.payload["kind"] == "stall"
    assert "progress reports are not output" in failed.payload["detail"]
    waited_s = call.at(failed) - call.spoke_until_s  # the VAD's hangover (600 ms) included
    limit_s = SETTINGS.progress_limit_ms / 1000
    assert limit_s <= waited_s <= limit_s + 1.0
    # The call moves on: here (local is the whole chain) a reconnect, then the apology.
    assert call.events("failover.reconnect")


async def test_a_speech_worker_that_dies_is_a_provider_failure_of_kind_crash(
    autojump_clock: trio.abc.Clock,
) -> None:
    speech = FakeSpeech(decode_s=0.1, lost=True)
    call = await place_call(speech, hang_up_at=10.0)
    failed = call.events("provider.failed")[0]
    assert (failed.payload["provider"], failed.payload["kind"]) == ("local", "crash")
    assert "speech worker 0 died" in failed.payload["detail"]
    # Failover started at once, not after a stall timeout.
    assert call.at(failed) - call.spoke_until_s < 1.0
    assert call.events("failover.reconnect")
