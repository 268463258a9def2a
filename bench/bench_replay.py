"""Replay speed: wall time to replay a recorded call, against the call's length.

    python bench/bench_replay.py [--minutes 1 10 60] [--repeat 3] [--json]

Each call is synthesized by a long scripted call, recorded as the product records
one: placed through the real call nursery on Trio's MockClock (``run_call``, the
Twilio transport, the supervisor) with the fake OpenAI Realtime answering every
caller line (a caller line every 15 s, an answer of about 7 s, a ``lookup_hours``
tool call every tenth turn) and a recording tape; its trace is then replayed with
``replay_trace``, ``--repeat`` times (the median is reported).

Targets (issue 13): a 10-minute call replays in under 1 s, a 60-minute call in
under 5 s. The reference measured in the same run: the same call's length stepped
frame by frame on a MockClock by one task that does nothing else (one virtual-time
step per 20 ms of call), the floor of a replay that feeds the caller's frames on
their own ticks; the ratio shows what the replay costs beyond that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import trio
import trio.testing
from _harness import use_test_helpers

from switchboard.codecs.recording_format import Kind
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.replay.compare import compare_events
from switchboard.orchestrator.replay.engine import replay_trace
from switchboard.orchestrator.trace_file import Trace
from switchboard.testing import Script, ToolStep, Turn

AGENT = parse_agent_yaml(
    "name: bench\ntenant: t\ngreeting: Thanks for calling the clinic.\n"
    "instructions: You are a receptionist.\nmode: openai-realtime\n"
    "idle_timeout_seconds: 60\nmax_call_seconds: 7200\nintents: []\n"
    'hours: {monday: "09:00-17:00"}\n'
)
LINE = "what are your opening hours on saturday"
ANSWER = (
    "We are open from nine in the morning until five in the evening on weekdays, "
    "and from ten until two on Saturdays."
)
TARGETS_S = {10.0: 1.0, 60.0: 5.0}


def synthesize(minutes: float) -> Trace:
    """A recorded call of ``minutes`` (see the module docstring)."""
    use_test_helpers()
    from provider_calls import place_call

    cycle_s = 15.0
    turns = int(minutes * 60 / cycle_s)
    script = Script(
        greeting="Thanks for calling the clinic.",
        turns=tuple(
            Turn(say="Let me check.", tool=ToolStep("lookup_hours"), then_say=ANSWER)
            if n % 10 == 9
            else Turn(say=ANSWER, caller_text=LINE)
            for n in range(turns)
        ),
    )

    async def main() -> Any:
        return await place_call(
            AGENT,
            script,
            Script(),
            lines=[LINE] * turns,
            speak_at=[4.0 + cycle_s * n for n in range(turns)],
            hang_up_at=minutes * 60,
            record=True,
        )

    call = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return call.trace()  # type: ignore[no-any-return]


def tick_reference(minutes: float) -> float:
    """Wall seconds for one task to step through the call frame by frame on a MockClock."""

    async def ticks() -> None:
        for _ in range(int(minutes * 60 * 50)):
            await trio.sleep(0.02)

    started = time.perf_counter()
    trio.run(ticks, clock=trio.testing.MockClock(autojump_threshold=0))
    return time.perf_counter() - started


def measure(minutes: float, repeat: int) -> dict[str, Any]:
    started = time.perf_counter()
    trace = synthesize(minutes)
    synth_s = time.perf_counter() - started
    assert trace.records is not None
    agent_bytes = sum(len(r.data) for r in trace.records if r.kind is Kind.AGENT_AUDIO)
    walls: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        replay = replay_trace(trace)
        walls.append(time.perf_counter() - started)
    matches = compare_events(trace.events, replay.events, tolerance_ms=0).matches
    wall = statistics.median(walls)
    reference = tick_reference(minutes)
    target = TARGETS_S.get(minutes)
    return {
        "minutes": minutes,
        "events": len(trace.events),
        "tape_records": len(trace.records),
        "agent_talk_pct": round(100 * agent_bytes / 8000 / (minutes * 60), 1),
        "synthesis_s": round(synth_s, 2),
        "replay_wall_s": round(wall, 3),
        "replay_wall_all_s": [round(w, 3) for w in walls],
        "call_seconds_per_wall_second": round(minutes * 60 / wall),
        "frame_tick_reference_s": round(reference, 3),
        "replay_over_reference": round(wall / reference, 2),
        "matches_recording": matches,
        "target_s": target,
        "meets_target": None if target is None else wall < target,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0, 60.0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(m, args.repeat) for m in args.minutes]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{'call':>8} {'events':>7} {'records':>8} {'talk%':>6} {'replay':>8} {'x real':>7}"
        f" {'ref':>7} {'ratio':>6} {'match':>6} target"
    )
    for r in results:
        target = (
            "-"
            if r["target_s"] is None
            else f"< {r['target_s']:g} s: " + ("met" if r["meets_target"] else "MISSED")
        )
        print(
            f"{r['minutes']:>6g} m {r['events']:>7} {r['tape_records']:>8}"
            f" {r['agent_talk_pct']:>6} {r['replay_wall_s']:>7.3f}s"
            f" {r['call_seconds_per_wall_second']:>7} {r['frame_tick_reference_s']:>6.3f}s"
            f" {r['replay_over_reference']:>6} {r['matches_recording']!s:>6} {target}"
        )


if __name__ == "__main__":
    main()
