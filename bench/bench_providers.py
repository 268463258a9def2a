"""The runtime's own added latency per direction and provider mode, beside a bare relay hop.

    python bench/bench_providers.py [--calls 2] [--lines 3] [--modes openai-realtime,...] [--json]

Starts a server on an embedded PostgreSQL in a temporary folder, the fake
providers of :mod:`switchboard.testing` on loopback ports, and places
``--calls`` phone calls per mode as Twilio would (signed webhook, Media
Stream, 20 ms G.711 frames every 20 ms); the caller says ``--lines`` lines,
each after the previous answer has played. Everything runs in one Trio loop,
so one clock times both ends:

- answer direction: per response, the fake hands its first audio chunk to its
  WebSocket (``cascaded``: the fake TTS's streamed HTTP body yields its first
  audio bytes) -> the caller receives the first ``media`` frame of that response;
- caller direction: per caller frame, the caller hands it to its WebSocket ->
  the fake gets the message carrying that frame's last sample (matched by
  cumulative sample position, after rate conversion: OpenAI Realtime and
  Deepgram live (``cascaded``) get G.711 8 kHz passed through, Gemini Live
  PCM16 at 16 kHz). The microphone
  starts once the greeting has played, so every frame it sends reaches a
  provider whose session is open (frames sent during the connect are held by
  the supervisor by design, and would measure the connect).

The fakes are timed at their WebSocket (the accepted connection's
``send_message``/``get_message`` are wrapped; the fakes are unchanged).
``cascaded`` gets caller audio at its fake Deepgram's WebSocket and answers
from its fake TTS over HTTP (served by hypercorn on loopback): its handler is
wrapped so the response body is timed as it streams. Each scripted answer is
one sentence, so one TTS request per response (the greeting included); the
fake chat's answer in between is not timed (it is the model's time, not the
runtime's). Its reference answer leg is a WebSocket relay hop with the TTS
chunk's size (binary in, the caller's ``media`` message out).
``local`` runs inside the runtime, so it has no provider wire: it is timed
where the runtime hands it caller audio (its inbox) and where it hands the
runtime agent audio (its outbox). Its figures cross one WebSocket (the
caller's) instead of two, so they are compared with a direct hop.

Reference, measured in the same run right after each mode's calls with the
message sizes (median) and frame types that mode's wire used: a bare
loopback WebSocket relay hop (client -> trio-websocket relay -> server, the
relay forwarding each message at once with the outgoing leg's size) and a
direct hop (client -> server). The ratio is runtime / reference, of medians
and of p99s. Issue 4 sets no numeric target; the exit status is non-zero
when a mode gives no figures or its sample positions do not line up.
"""

from __future__ import annotations

import argparse
import bisect
import json
import statistics
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
import trio_websocket
from _harness import summary_ms

import switchboard.actors.local.provider as local_provider
from switchboard.actors.messages import AgentAudio, CallerAudio
from switchboard.actors.providers import Endpoints, ProviderSetup
from switchboard.codecs import gemini_live, openai_realtime
from switchboard.codecs import twilio_media as twilio_wire
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.caller import SILENCE, CallerLine, Phone, post_webhook, twilio_sid
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.embedded_pg import start_embedded
from switchboard.orchestrator.logs import configure as configure_logs
from switchboard.orchestrator.server import serve
from switchboard.orchestrator.store import Store
from switchboard.testing import Script, Turn
from switchboard.testing import serve as serve_fake
from switchboard.testing.fake_chat import FakeChat
from switchboard.testing.fake_deepgram import FakeDeepgram
from switchboard.testing.fake_gemini_live import FakeGeminiLive
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime
from switchboard.testing.fake_tts import FakeTTS
from switchboard.testing.http import HttpHandler, serve_http
from switchboard.testing.speech import speak_bytes

MODES = ("openai-realtime", "gemini-live", "cascaded", "local")
AUTH_TOKEN = "bench"
DEMO_NUMBER = "+15005550006"  # the example agent (mode local), applied by the server
NUMBERS = {
    "openai-realtime": "+15005550101",
    "gemini-live": "+15005550102",
    "cascaded": "+15005550103",
}
FRAME_SAMPLES = twilio_wire.FRAME_BYTES  # G.711: one byte per sample, 8 kHz
SCRIPT = Script(greeting="Hello, thanks for calling.", fallback=Turn(say="Sure, we can do that."))
LINE_TEXT = "when are you open"  # the example agent's hours intent, for local
REFERENCE_MESSAGES = 150
RESPONSE_TIMEOUT_S = 20.0


@dataclass
class WireLog:
    """One call's timestamps at the provider's boundary (trio time, seconds)."""

    answer_starts: list[float] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    received_upto: list[float] = field(default_factory=list)  # caller samples, at 8 kHz
    answer_sizes: list[int] = field(default_factory=list)
    caller_sizes: list[int] = field(default_factory=list)
    binary: dict[str, bool] = field(default_factory=dict)  # direction -> frame type
    _open_response: Any = None

    def answer_chunk(self, at: float, response: object, size: int, binary: bool) -> None:
        """An audio chunk of ``response`` left the provider at ``at``."""
        self.answer_sizes.append(size)
        self.binary["answer"] = binary
        if response != self._open_response:
            self._open_response = response
            self.answer_starts.append(at)

    def answer_ended(self) -> None:
        self._open_response = None

    def caller_audio(self, at: float, samples_8k: float, size: int, binary: bool) -> None:
        """Caller audio worth ``samples_8k`` samples at 8 kHz reached the provider at ``at``."""
        before = self.received_upto[-1] if self.received_upto else 0.0
        self.received_at.append(at)
        self.received_upto.append(before + samples_8k)
        self.caller_sizes.append(size)
        self.binary["caller"] = binary


# -- timing the fakes at their WebSocket ---------------------------------------------------


class _TimedSocket:
    """An accepted connection whose ``send_message``/``get_message`` are timed into a log."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, bench: ModeBench) -> None:
        self._ws = ws
        self._bench = bench

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ws, name)

    async def send_message(self, message: str | bytes) -> None:
        at = trio.current_time()
        await self._ws.send_message(message)
        self._bench.on_provider_sent(at, message)

    async def get_message(self) -> str | bytes:
        message = await self._ws.get_message()
        self._bench.on_provider_received(trio.current_time(), message)
        return message


class _TimedRequest:
    """A handshake whose ``accept`` gives a :class:`_TimedSocket`."""

    def __init__(self, request: trio_websocket.WebSocketRequest, bench: ModeBench) -> None:
        self._request = request
        self._bench = bench

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    async def accept(self, **kwargs: Any) -> _TimedSocket:
        return _TimedSocket(await self._request.accept(**kwargs), self._bench)


def timed(
    handle: Callable[[Any], Awaitable[None]], bench: ModeBench
) -> Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        await handle(_TimedRequest(request, bench))

    return handler


def timed_http(handle: HttpHandler, bench: ModeBench) -> HttpHandler:
    """An HTTP fake's handler whose streamed 200 bodies are audio chunks timed into ``bench``.

    Each body is one response of the agent (see the module docstring); a chunk
    is timed when the fake's body yields it, before the server writes it.
    """

    async def handler(request: httpx.Request) -> httpx.Response:
        response = await handle(request)
        if response.status_code != 200:
            return response
        body = response.aiter_raw()
        key = object()  # this body: one response

        async def timed_body() -> AsyncIterator[bytes]:
            async for chunk in body:
                bench.log.answer_chunk(trio.current_time(), key, len(chunk), True)
                yield chunk

        return httpx.Response(
            200, headers={"content-type": response.headers["content-type"]}, content=timed_body()
        )

    return handler


@dataclass
class ModeBench:
    """One mode's calls: the current call's log, and every call's figures."""

    mode: str
    log: WireLog = field(default_factory=WireLog)
    answer_s: list[float] = field(default_factory=list)
    caller_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    answer_sizes: list[int] = field(default_factory=list)
    caller_sizes: list[int] = field(default_factory=list)
    caller_media_size: int = 0
    agent_media_size: int = 0
    binary: dict[str, bool] = field(default_factory=dict)

    def on_provider_sent(self, at: float, message: str | bytes) -> None:
        binary = isinstance(message, bytes)
        if self.mode == "openai-realtime":
            event = openai_realtime.parse_server_event(message)
            if isinstance(event, openai_realtime.ResponseOutputAudioDelta):
                self.log.answer_chunk(at, event.response_id, len(message), binary)
        elif self.mode == "gemini-live":
            for part in gemini_live.parse_server(message):
                if not isinstance(part, gemini_live.ServerContent):
                    continue
                if any(isinstance(p, gemini_live.InlineAudio) for p in part.parts):
                    self.log.answer_chunk(at, "turn", len(message), binary)
                if part.turn_complete or part.interrupted:
                    self.log.answer_ended()

    def on_provider_received(self, at: float, message: str | bytes) -> None:
        binary = isinstance(message, bytes)
        if self.mode == "openai-realtime":
            event = openai_realtime.parse_client_event(message)
            if isinstance(event, openai_realtime.InputAudioBufferAppend):
                # The session asks for audio/pcmu: one byte per 8 kHz sample.
                self.log.caller_audio(at, len(event.audio), len(message), binary)
        elif self.mode == "cascaded":
            if binary:  # G.711 mu-law 8 kHz as the caller sent it: one byte per sample
                self.log.caller_audio(at, len(message), len(message), binary)
        else:
            msg = gemini_live.parse_client(message)
            if isinstance(msg, gemini_live.RealtimeAudio):
                samples = len(msg.data) / 2 * 8000 / msg.sample_rate
                self.log.caller_audio(at, samples, len(message), binary)

    def finish_call(self, phone: TimedPhone) -> None:
        """Match this call's provider-side timestamps with the caller's."""
        log, self.log = self.log, WireLog()
        self.answer_sizes += log.answer_sizes
        self.caller_sizes += log.caller_sizes
        self.binary |= log.binary
        starts = log.answer_starts
        for k, sent in enumerate(starts):
            i = bisect.bisect_left(phone.media_times, sent)
            nxt = starts[k + 1] if k + 1 < len(starts) else float("inf")
            if i == len(phone.media_times) or phone.media_times[i] >= nxt:
                self.problems.append(f"{self.mode}: response {k} never reached the caller")
                continue
            self.answer_s.append(phone.media_times[i] - sent)
        if not starts:
            self.problems.append(f"{self.mode}: the provider sent no audio")
        received = log.received_upto[-1] if log.received_upto else 0.0
        sent_samples = len(phone.frames_sent) * FRAME_SAMPLES
        if received > sent_samples + 1 or received < sent_samples - 10 * FRAME_SAMPLES:
            self.problems.append(
                f"{self.mode}: the provider got {received:.0f} caller samples (8 kHz), "
                f"the caller sent {sent_samples}: positions do not line up"
            )
            return
        for n, at in enumerate(phone.frames_sent):
            i = bisect.bisect_left(log.received_upto, (n + 1) * FRAME_SAMPLES - 0.5)
            if i < len(log.received_at):
                self.caller_s.append(log.received_at[i] - at)


# -- the local provider, timed at its inbox and outbox -------------------------------------


class _TimedInbox:
    def __init__(self, inbox: trio.MemoryReceiveChannel[Any], bench: ModeBench) -> None:
        self._inbox = inbox
        self._bench = bench

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inbox, name)

    def __aiter__(self) -> _TimedInbox:
        return self

    async def __anext__(self) -> Any:
        message = await self._inbox.__anext__()
        if isinstance(message, CallerAudio):
            chunk = message.chunk
            samples = chunk.samples * 8000 / chunk.sample_rate
            self._bench.log.caller_audio(trio.current_time(), samples, len(chunk.data), False)
        return message


class _TimedOutbox:
    def __init__(self, outbox: trio.MemorySendChannel[Any], bench: ModeBench) -> None:
        self._outbox = outbox
        self._bench = bench

    def __getattr__(self, name: str) -> Any:
        return getattr(self._outbox, name)

    async def send(self, message: Any) -> None:
        at = trio.current_time()
        await self._outbox.send(message)
        if isinstance(message, AgentAudio):
            self._bench.log.answer_chunk(at, message.response_id, len(message.chunk.data), False)


def time_local_provider(bench: ModeBench) -> None:
    """Wrap ``local``'s ``build`` so its inbox and outbox are timed into ``bench``."""
    original = local_provider.build

    def build(setup: ProviderSetup) -> Any:
        provider = original(setup)

        async def run(inbox: Any, outbox: Any, events: Any) -> None:
            await provider(_TimedInbox(inbox, bench), _TimedOutbox(outbox, bench), events)

        return run

    local_provider.build = build  # type: ignore[assignment]


# -- the caller ------------------------------------------------------------------------------


class TimedPhone(Phone):
    """The ``switchboard call`` phone, noting when each microphone frame was sent."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, encoder: Any) -> None:
        super().__init__(ws, encoder, realtime=True)
        self.frames_sent: list[float] = []

    async def microphone(self) -> None:
        next_s = trio.current_time()
        while not self.closed.is_set():
            frame = self._microphone.pop(0) if self._microphone else SILENCE
            self.frames_sent.append(trio.current_time())
            await self._send(self.encoder.media(frame))
            if not self._microphone:
                self._line_sent.set()
            next_s += twilio_wire.FRAME_BYTES / twilio_wire.SAMPLE_RATE
            await trio.sleep_until(next_s)


async def timed_call(base_url: str, number: str, lines: list[CallerLine]) -> TimedPhone:
    """A call as ``place_call`` makes it; the microphone starts once the greeting has played."""
    call_sid, account_sid = twilio_sid("CA"), twilio_sid("AC")
    params = {
        "CallSid": call_sid,
        "AccountSid": account_sid,
        "From": "+15005550001",
        "To": number,
        "Direction": "inbound",
        "CallStatus": "ringing",
    }
    async with httpx.AsyncClient(timeout=10.0) as client:
        stream_url, parameters = await post_webhook(client, base_url, AUTH_TOKEN, params)
    encoder = twilio_wire.InboundEncoder(twilio_sid("MZ"), call_sid, account_sid)
    async with (
        trio_websocket.open_websocket_url(stream_url) as ws,
        trio.open_nursery() as nursery,
    ):
        phone = TimedPhone(ws, encoder)
        nursery.start_soon(phone.listen, nursery)
        await ws.send_message(encoder.connected())
        t_start = trio.current_time()
        await ws.send_message(encoder.start(parameters))
        await phone.wait_response(t_start, RESPONSE_TIMEOUT_S)
        nursery.start_soon(phone.microphone)
        for line in lines:
            spoke = await phone.speak(line.audio)
            await phone.wait_response(spoke, RESPONSE_TIMEOUT_S)
        await ws.send_message(encoder.stop())
        await ws.aclose()
        nursery.cancel_scope.cancel()
    return phone


# -- the reference hop -----------------------------------------------------------------------


def payload(size: int, binary: bool) -> str | bytes:
    return b"x" * size if binary else "x" * size


async def reference_hop(
    in_message: str | bytes, out_message: str | bytes, *, relay: bool, count: int
) -> list[float]:
    """Seconds from a client's ``send_message`` to the server's ``get_message``, per message.

    With ``relay``, the client talks to a trio-websocket relay that sends
    ``out_message`` on to the server for each message it gets; otherwise the
    client talks to the server directly. One message every 20 ms.
    """
    arrived: list[float] = []
    all_in = trio.Event()

    async def sink(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        while len(arrived) < count:
            await ws.get_message()
            arrived.append(trio.current_time())
        all_in.set()

    async def relay_handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{sink_port}/") as out:
            while True:
                await ws.get_message()
                await out.send_message(out_message)

    sent: list[float] = []
    async with trio.open_nursery() as nursery:
        sink_port = await nursery.start(serve_fake, sink)
        relay_port = await nursery.start(serve_fake, relay_handler)
        port = relay_port if relay else sink_port
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            next_s = trio.current_time()
            for _ in range(count):
                sent.append(trio.current_time())
                await ws.send_message(in_message if relay else out_message)
                next_s += 0.02
                await trio.sleep_until(next_s)
            with trio.move_on_after(5):
                await all_in.wait()
        nursery.cancel_scope.cancel()
    return [b - a for a, b in zip(sent, arrived, strict=False)]


# -- the run ---------------------------------------------------------------------------------


def agent_yaml(mode: str) -> str:
    return (
        f"name: bench-{mode}\ntenant: demo\ngreeting: {SCRIPT.greeting}\n"
        f"instructions: You are a receptionist.\nmode: {mode}\n"
        f'phone_numbers: ["{NUMBERS[mode]}"]\nintents: []\n'
        'hours: {monday: "09:00-17:00"}\n'
    )


async def run_mode(
    mode: str, base_url: str, calls: int, lines: int, bench: ModeBench
) -> dict[str, Any]:
    line = CallerLine.say(LINE_TEXT)
    number = DEMO_NUMBER if mode == "local" else NUMBERS[mode]
    for _ in range(calls):
        phone = await timed_call(base_url, number, [line] * lines)
        bench.caller_media_size = len(phone.encoder.media(SILENCE))
        bench.agent_media_size = len(
            twilio_wire.encode_outbound(twilio_wire.OutboundMedia("MZ" + "0" * 32, SILENCE))
        )
        bench.finish_call(phone)

    def size(values: list[int]) -> int:
        return round(statistics.median(values)) if values else 0

    # Legs of the reference: provider wire in, caller wire out (answer); the reverse (caller).
    legs = {
        "answer": (
            payload(size(bench.answer_sizes), bench.binary.get("answer", False)),
            payload(bench.agent_media_size, False),
        ),
        "caller": (
            payload(bench.caller_media_size, False),
            payload(size(bench.caller_sizes), bench.binary.get("caller", False)),
        ),
    }
    relay = mode != "local"
    report: dict[str, Any] = {}
    for direction, measured in (("answer", bench.answer_s), ("caller", bench.caller_s)):
        in_message, out_message = legs[direction]
        if not relay:  # one hop: the caller's message size
            in_message = out_message = (
                payload(bench.agent_media_size, False)
                if direction == "answer"
                else payload(bench.caller_media_size, False)
            )
        ref = await reference_hop(in_message, out_message, relay=relay, count=REFERENCE_MESSAGES)
        report[direction] = {
            "runtime": summary_ms(measured),
            "reference": summary_ms(ref),
            "reference_kind": "relay hop" if relay else "direct hop",
            "message_bytes": [len(in_message), len(out_message)],
        }
        run_, ref_ = report[direction]["runtime"], report[direction]["reference"]
        if run_ and ref_:
            run_["ratio_median"] = run_["median_ms"] / ref_["median_ms"]
            run_["ratio_p99"] = run_["p99_ms"] / ref_["p99_ms"]
    return report


def prewarm_speech() -> None:
    """The fakes synthesize on the event loop (on purpose, for MockClock): cache it first."""
    for text in (SCRIPT.greeting, SCRIPT.fallback.say):
        for rate in (8000, 24000):
            speak_bytes(text, rate)


async def run(modes: list[str], calls: int, lines: int) -> dict[str, Any]:
    prewarm_speech()
    report: dict[str, Any] = {"calls": calls, "lines": lines, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp, start_embedded(Path(tmp)) as pg:
        benches = {mode: ModeBench(mode) for mode in modes}
        fakes: dict[str, Callable[[Any], Awaitable[None]]] = {
            "openai-realtime": FakeOpenAIRealtime(SCRIPT).handler,
            "gemini-live": FakeGeminiLive(SCRIPT).handler,
        }
        async with trio.open_nursery() as nursery:
            ports = {}
            for mode, handle in fakes.items():
                bench = benches.get(mode, ModeBench(mode))
                ports[mode] = await nursery.start(serve_fake, timed(handle, bench))
            cascaded = benches.get("cascaded", ModeBench("cascaded"))
            stt = timed(FakeDeepgram(SCRIPT).handler, cascaded)
            stt_port = await nursery.start(serve_fake, stt)
            chat_url = await nursery.start(serve_http, FakeChat(SCRIPT).handler)
            tts = timed_http(FakeTTS(SCRIPT).handler, cascaded)
            tts_url = await nursery.start(serve_http, tts)
            settings = Settings(
                port=0,
                data_dir=Path(tmp),
                database_url=pg.uri,
                twilio_auth_token=AUTH_TOKEN,
                log_format="console",
                log_level="warning",
                endpoints=Endpoints(
                    openai_realtime_url=f"ws://127.0.0.1:{ports['openai-realtime']}/v1/realtime",
                    gemini_live_url=f"ws://127.0.0.1:{ports['gemini-live']}/ws",
                    stt_url=f"ws://127.0.0.1:{stt_port}/v1/listen",
                    llm_base_url=f"{chat_url}/v1",
                    llm_model="fake-llm",
                    tts_base_url=f"{tts_url}/v1",
                ),
            )
            (url, *_) = await nursery.start(serve, settings)
            with Database(pg.uri) as db:
                for mode in NUMBERS:
                    Store(db).apply_agent(parse_agent_yaml(agent_yaml(mode)))
            for mode in modes:
                if mode == "local":
                    time_local_provider(benches[mode])
                report["modes"][mode] = await run_mode(mode, url, calls, lines, benches[mode])
                report["modes"][mode]["problems"] = benches[mode].problems
            nursery.cancel_scope.cancel()
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"{report['calls']} calls per mode, {report['lines']} caller lines each; "
        "milliseconds, runtime vs reference (same run)"
    )
    head = (
        f"  {'mode':16} {'direction':9} {'n':>5}  {'median':>7} {'p99':>7}"
        f"   {'reference':10} {'median':>7} {'p99':>7}   {'x median':>8} {'x p99':>6}"
    )
    print(head)
    for mode, r in report["modes"].items():
        for direction in ("answer", "caller"):
            d = r[direction]
            run_, ref = d["runtime"], d["reference"]
            if not run_ or not ref:
                print(f"  {mode:16} {direction:9} no figures")
                continue
            print(
                f"  {mode:16} {direction:9} {run_['n']:5d}  {run_['median_ms']:7.2f}"
                f" {run_['p99_ms']:7.2f}   {d['reference_kind']:10} {ref['median_ms']:7.2f}"
                f" {ref['p99_ms']:7.2f}   {run_['ratio_median']:8.1f} {run_['ratio_p99']:6.1f}"
            )
        for problem in r["problems"]:
            print(f"  PROBLEM {problem}")
    print(
        "  answer: provider's first audio chunk of a response (cascaded: the TTS body's first"
        "\n  bytes) -> caller's first media frame;"
        "\n  caller: caller frame sent -> provider got its last sample. local is timed at its"
        "\n  inbox/outbox inside the runtime (no provider wire): one WebSocket, a direct hop."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2, help="calls per mode (default 2)")
    parser.add_argument("--lines", type=int, default=3, help="caller lines per call (default 3)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated modes")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    configure_logs("console", "warning")
    report = trio.run(run, modes, args.calls, args.lines)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_report(report)
    failed = any(
        r["problems"] or not r["answer"]["runtime"] or not r["caller"]["runtime"]
        for r in report["modes"].values()
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
