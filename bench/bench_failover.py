"""The silence a caller hears when the provider fails, on virtual and on real time.

    python bench/bench_failover.py [--runs 5] [--json]

Each run is one call through the real call nursery (``run_call``: transport,
supervisor, tool executor, event logger), chain openai-realtime ->
gemini-live -> local, the two fakes of :mod:`switchboard.testing` reached in
memory (real WebSocket framing), the caller a fake Twilio (``tests/
call_harness.py``) that plays agent audio on the call's clock and sends a
20 ms frame every 20 ms. Scenarios:

- ``5xx at connect``: OpenAI refuses the handshake with 503; Gemini greets.
  Gap: the call's start -> the first agent audio heard.
- ``stall mid-answer``: OpenAI stops sending after 600 ms of its answer to
  the caller's line, connection open; Gemini answers the line again.
- ``drop mid-answer``: OpenAI closes the connection (1011) a few messages
  into that answer (about 300 ms of audio); Gemini answers again.

For the last two the gap runs from the end of the failed provider's last
audio to the start of the next provider's first audio, on the caller's
playout timeline (FakeTwilio plays frames on the call's clock and reports
the transport's marks when played): audio the failed provider had sent
before it failed still plays, so the caller may hear no gap at all.

Every scenario runs ``--runs`` times on Trio's MockClock (virtual time: the
failover policy and its wiring, deterministic) and as many times on the real
clock (Trio's default; real scheduling, WebSocket framing and eSpeak
synthesis costs are in). Target (issue 5): the gap is at most the agent's
``stall_timeout_ms`` plus 250 ms; checked on the p99 of each scenario on each
clock, and the exit status is non-zero when it is missed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any
from uuid import uuid4

import trio
import trio.testing
from _harness import summary_ms, use_test_helpers

from switchboard.actors.context import PHONE_AUDIO, CallContext
from switchboard.actors.local.assets import AssetRegistry
from switchboard.actors.providers import Endpoints
from switchboard.actors.twilio_transport import AUDIO_MARK
from switchboard.codecs import twilio_media as wire
from switchboard.codecs import ulaw_encode
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.call import CallResources, run_call
from switchboard.orchestrator.logs import configure as configure_logs
from switchboard.testing import Fault, Script, Turn, memory_router
from switchboard.testing.fake_gemini_live import FakeGeminiLive
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime
from switchboard.testing.speech import speak, speak_bytes

use_test_helpers()
from call_harness import LEAD_MS, FakeTwilio, MemoryStore, transport_for  # noqa: E402

AGENT = parse_agent_yaml(
    "name: bench-failover\ntenant: t\ngreeting: Thanks for calling.\n"
    "instructions: You are a receptionist.\nmode: openai-realtime\nfallback: [gemini-live]\n"
    'transfer_number: "+15005550009"\nidle_timeout_seconds: 60\nintents: []\n'
    'hours: {monday: "09:00-17:00"}\n'
)
ENDPOINTS = Endpoints(
    openai_realtime_url="wss://openai.fake/v1/realtime",
    openai_api_key="sk-test",
    gemini_live_url="wss://gemini.fake/ws/BidiGenerateContent",
    gemini_api_key="g-test",
)
ASSETS = AssetRegistry()
LINE = "what are your opening hours"
ANSWER = "We are open from nine in the morning until five in the evening on weekdays."
BACKUP_ANSWER = "We open at nine."
SILENCE = b"\xff" * wire.FRAME_BYTES
FRAME_S = wire.FRAME_BYTES / wire.SAMPLE_RATE
PAUSE_S = 0.3  # the caller speaks this long after the greeting has played
HEARD_S = 0.2  # ... and hangs up this long after the backup's audio has played
CALL_CAP_S = 20.0  # a run that has not heard the backup by then counts as an infinite gap


@dataclass(frozen=True)
class Scenario:
    name: str
    openai: Script
    gemini: Script
    caller_speaks: bool  # the failure happens in the answer to the caller's line
    gap_from_start: bool  # the gap runs from the call's start (a failure at connect)


SCENARIOS = (
    Scenario(
        "5xx at connect",
        Script(faults=(Fault("http_5xx", status=503),)),
        Script(greeting="Thanks for calling, this is the backup line."),
        caller_speaks=False,
        gap_from_start=True,
    ),
    Scenario(
        "stall mid-answer",
        Script(
            greeting="Hello.",
            turns=(Turn(say=ANSWER, caller_text=LINE),),
            faults=(Fault("stall", turn=1, after_audio_ms=600),),
        ),
        Script(turns=(Turn(say=BACKUP_ANSWER, caller_text=LINE),)),
        caller_speaks=True,
        gap_from_start=False,
    ),
    Scenario(
        "drop mid-answer",
        Script(
            greeting="Hello.",
            turns=(Turn(say=ANSWER, caller_text=LINE),),
            # response.created, output_item.added, then audio and transcript deltas:
            # the connection closes after about 300 ms of the answer's audio.
            faults=(Fault("drop", turn=1, after_messages=8),),
        ),
        Script(turns=(Turn(say=BACKUP_ANSWER, caller_text=LINE),)),
        caller_speaks=True,
        gap_from_start=False,
    ),
)


@dataclass(frozen=True)
class Outcome:
    gap_s: float  # math.inf: the caller never heard agent audio again
    recovery_s: float  # failure declared -> the next provider's first audio heard
    failure: str  # kind of the first provider.failed event ("" if none)
    switched_to: str


def failure_time(ctx: CallContext, store: MemoryStore) -> tuple[float, str] | None:
    """Call-clock time and kind of the first ``provider.failed`` event, if any yet."""
    rows = [store.events[s] for s in sorted(store.events)]
    failed = [e for e in rows if e.type == "provider.failed"]
    if not failed:
        return None
    return ctx.t0 + failed[0].t_ms / 1000, str(failed[0].payload.get("kind", ""))


def gap_after(marks: list[tuple[str, float]], failed_responses: set[str]) -> tuple[float, float]:
    """Seconds of silence between the failed provider's audio and the next provider's.

    ``marks`` are the transport's marks with their playout times, as Twilio
    plays them (``audio:<response id>:<ms of that response sent>``, see
    :mod:`switchboard.actors.twilio_transport`); ``failed_responses`` the
    response ids the failed provider sent on its wire. 0 when the new audio
    follows on without a pause; ``inf`` when none came. Returns (gap, start of
    the new audio), seconds and call-clock time.
    """
    old_end, new_start = 0.0, math.inf
    for name, played_until in marks:
        if not name.startswith(AUDIO_MARK):
            continue
        response_id, _, sent_ms = name.removeprefix(AUDIO_MARK).rpartition(":")
        if response_id in failed_responses:
            old_end = max(old_end, played_until)
        else:
            new_start = min(new_start, played_until - float(sent_ms) / 1000)
    return max(0.0, new_start - old_end), new_start


async def one_call(scenario: Scenario) -> Outcome:
    ctx = CallContext(
        uuid4(), uuid4(), uuid4(), AGENT, t0=trio.current_time(), call_sid="CA1", stream_sid="MZ1"
    )
    twilio, store = FakeTwilio(), MemoryStore()
    primary = FakeOpenAIRealtime(scenario.openai)
    res = CallResources(
        store=store,  # type: ignore[arg-type]  # the two methods a call uses
        assets=ASSETS,
        endpoints=ENDPOINTS,
        connect=memory_router(
            {
                "openai.fake": primary.handler,
                "gemini.fake": FakeGeminiLive(scenario.gemini).handler,
            }
        ),
    )
    line = ulaw_encode(speak(LINE, wire.SAMPLE_RATE)) if scenario.caller_speaks else b""

    def backup_heard(now: float) -> bool:
        failed = failure_time(ctx, store)
        return (
            failed is not None
            and any(start >= failed[0] for start, _ in twilio.heard)
            and now > twilio.playout_end + HEARD_S
        )

    async def caller() -> None:
        """A phone: a frame every 20 ms, the line once the greeting has played, else silence."""
        encoder = wire.InboundEncoder("MZ1", "CA1", "AC1")
        pending, spoke = b"", not line
        next_s = ctx.t0
        while next_s - ctx.t0 < CALL_CAP_S:
            now = trio.current_time()
            if not spoke and twilio.heard and now > twilio.playout_end + PAUSE_S:
                pending, spoke = line, True
            frame, pending = pending[: wire.FRAME_BYTES], pending[wire.FRAME_BYTES :]
            await twilio.to_server.send(encoder.media(frame.ljust(wire.FRAME_BYTES, b"\xff")))
            if spoke and not pending and backup_heard(now):
                break
            next_s += FRAME_S
            await trio.sleep_until(next_s)
        await twilio.to_server.send(encoder.stop())

    async with trio.open_nursery() as nursery:
        twilio.nursery = nursery
        nursery.start_soon(caller)
        await run_call(ctx, transport_for(ctx, twilio), res)
        nursery.cancel_scope.cancel()
    failed = failure_time(ctx, store)
    switches = [e for e in store.events.values() if e.type == "failover.switch"]
    to = str(switches[0].payload.get("to", "")) if switches else ""
    if failed is None:
        return Outcome(math.inf, math.inf, "", to)
    if scenario.gap_from_start:
        first = min((start for start, _ in twilio.heard), default=math.inf)
        return Outcome(first - ctx.t0, first - failed[0], failed[1], to)
    failed_responses = {
        str(e["response"]["id"]) for e in primary.sent if e.get("type") == "response.created"
    }
    gap, new_start = gap_after(twilio.marks, failed_responses)
    return Outcome(gap, new_start - failed[0], failed[1], to)


def run_scenario(scenario: Scenario, runs: int, virtual: bool) -> list[Outcome]:
    clock: Callable[[], trio.abc.Clock | None] = (
        partial(trio.testing.MockClock, autojump_threshold=0) if virtual else lambda: None
    )
    return [trio.run(one_call, scenario, clock=clock()) for _ in range(runs)]


def prepare() -> None:
    """What a server does at start, and the fakes' speech cache (they synthesize inline)."""
    trio.run(ASSETS.get(AGENT).prepare, PHONE_AUDIO)  # in a speech worker
    for scenario in SCENARIOS:
        for script, rate in ((scenario.openai, 24000), (scenario.gemini, 24000)):
            for text in (script.greeting, *(t.say for t in script.turns)):
                speak_bytes(text, rate)
                speak_bytes(text, wire.SAMPLE_RATE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario and clock")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    configure_logs("console", "error")
    prepare()
    settings = AGENT.failover
    target_ms = settings.stall_timeout_ms + 250
    report: dict[str, Any] = {
        "runs": args.runs,
        "settings": {**asdict(settings), "playout_lead_ms": LEAD_MS},
        "target_ms": target_ms,
        "scenarios": {},
    }
    for scenario in SCENARIOS:
        for clock in ("virtual", "real"):
            outcomes = run_scenario(scenario, args.runs, virtual=clock == "virtual")
            gaps = [o.gap_s for o in outcomes]
            finite = [g for g in gaps if math.isfinite(g)]
            stats = summary_ms(finite)
            met = len(finite) == len(gaps) and bool(stats) and stats["p99_ms"] <= target_ms
            report["scenarios"][f"{scenario.name} ({clock})"] = {
                **stats,
                "recovery": summary_ms([o.recovery_s for o in outcomes if o.recovery_s < math.inf]),
                "never_heard_again": len(gaps) - len(finite),
                "failures": sorted({o.failure for o in outcomes}),
                "switched_to": sorted({o.switched_to for o in outcomes}),
                "target_met": met,
            }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_report(report)
    return 0 if all(r["target_met"] for r in report["scenarios"].values()) else 1


def print_report(report: dict[str, Any]) -> None:
    s = report["settings"]
    print(
        f"{report['runs']} runs per scenario and clock; stall_timeout_ms {s['stall_timeout_ms']},"
        f" audio_gap_timeout_ms {s['audio_gap_timeout_ms']}, connect_timeout_ms"
        f" {s['connect_timeout_ms']}, playout lead {s['playout_lead_ms']:.0f} ms"
    )
    print(
        f"  {'scenario (clock)':30} {'failure':12} {'gap median':>10} {'p99':>8}"
        f" {'recovery median':>15} {'p99':>7}  target"
    )
    for name, r in report["scenarios"].items():
        kinds = ",".join(r["failures"]) or "none"
        if "median_ms" not in r:
            print(f"  {name:30} {kinds:12} {'-':>8} {'-':>8}  MISSED (never heard again)")
            continue
        verdict = "met" if r["target_met"] else "MISSED"
        lost = f" ({r['never_heard_again']} never heard again)" if r["never_heard_again"] else ""
        rec = r["recovery"]
        print(
            f"  {name:30} {kinds:12} {r['median_ms']:10.1f} {r['p99_ms']:8.1f}"
            f" {rec.get('median_ms', math.inf):15.1f} {rec.get('p99_ms', math.inf):7.1f}"
            f"  {verdict} (<= {report['target_ms']} ms){lost}"
        )
    print("  gap: the failed provider's last audio -> the next provider's first audio, as played")
    print("  to the caller (5xx at connect: the call's start -> first agent audio); recovery:")
    print("  the failure's event -> the next provider's first audio played.")


if __name__ == "__main__":
    raise SystemExit(main())
