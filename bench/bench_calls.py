"""Greeting and response latency of real calls to the local agent, and whether they were answered.

    python bench/bench_calls.py [--calls 20] [--concurrency 2] [--capacity N] [--fast] [--json]

Starts a server on an embedded PostgreSQL in a temporary folder, places
``--calls`` calls to the demo agent as Twilio would (signed webhook, Media
Stream in real time: 20 ms frames every 20 ms, silence between lines), at
most ``--concurrency`` at once, each saying "what are your opening hours"
then "thank you goodbye", and reports on the caller's side:

- greeting latency: ``start`` sent -> first agent audio received;
- response latency: end of the caller's audio -> first agent audio after it,
  over every turn of every call. It contains the voice activity detector's
  end-of-speech hangover (how long the caller must be silent before the turn
  ends), the rest of speech recognition, and synthesis; the hangover is
  printed beside it;
- answered correctly: turns whose logged agent answer is the intent's reply
  (opening hours, then the goodbye);
- the longest gap in agent audio inside a response, as the caller's playout
  clock hears it (a frame that arrives after the audio before it has played).

Calls past the server's capacity for local calls (``--capacity``, else its
default of 2 x cores) are refused as busy by admission control, and counted.
Median and p95 over the calls. Design budget: first greeting audio within
500 ms of the call's start. The callers run in the server's process (one
Trio loop), so anything that blocks the server's loop delays them too.
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import json
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from switchboard.actors.local.vad import VoiceActivityDetector
from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator import devcreds
from switchboard.orchestrator.caller import CallerLine, CallError, Phone, place_call
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.server import serve

LINES = {
    "what are your opening hours": "We are open",
    "thank you goodbye": "Thank you for calling",
}
"""What the caller says -> how the right answer starts (examples/receptionist.yaml)."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def longest_gap_ms(phone: Phone) -> float:
    """The longest silence between two agent frames of one response, as the caller heard it."""
    longest = 0.0
    frames = sorted(phone.heard)
    for (start, payload), (next_start, _) in itertools.pairwise(frames):
        end = start + len(payload) / wire.SAMPLE_RATE
        if any(end - 0.001 <= t <= next_start for t in phone.response_ends):
            continue  # a response ended here: silence between answers is not a gap
        longest = max(longest, next_start - end)
    return longest * 1000


async def run(
    calls: int, concurrency: int, realtime: bool, capacity: int | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            port=0,
            data_dir=Path(tmp),
            twilio_auth_token="bench",
            log_format="console",
            log_level=os.environ.get("BENCH_LOG_LEVEL", "warning"),
            max_local_calls_per_worker=capacity,
        )
        greeting_ms: list[float] = []
        response_ms: list[float] = []
        gaps_ms: list[float] = []
        failures = 0
        refused = 0
        wrong: list[dict[str, Any]] = []
        correct = 0
        turns = 0
        lines = [CallerLine.say(text) for text in LINES]
        async with trio.open_nursery() as nursery:
            (url, *_) = await nursery.start(serve, settings)
            creds = devcreds.load(Path(tmp))
            assert creds is not None
            limiter = trio.CapacityLimiter(concurrency)

            async def one() -> None:
                nonlocal failures, refused, correct, turns
                phones: list[Phone] = []
                async with limiter:
                    try:
                        s = await place_call(
                            url,
                            lines,
                            to_number="+15005550006",
                            auth_token="bench",
                            api_key=creds.api_key,
                            realtime=realtime,
                            phones=phones,
                        )
                    except CallError as exc:  # admission control: past capacity
                        if "busy" not in str(exc):
                            raise
                        refused += 1
                        return
                if phones:
                    gaps_ms.append(longest_gap_ms(phones[0]))
                if s.greeting_latency_ms is None:
                    failures += 1
                    return
                greeting_ms.append(s.greeting_latency_ms)
                for turn in s.turns:
                    turns += 1
                    if turn.response_latency_ms is not None:
                        response_ms.append(turn.response_latency_ms)
                    if (turn.agent or "").startswith(LINES[turn.said]):
                        correct += 1
                    else:
                        wrong.append(
                            {
                                "said": turn.said,
                                "heard": turn.caller,
                                "answer": turn.agent,
                                "latency_ms": turn.response_latency_ms,
                                "ended_by": s.ended_by,
                                "events": s.events_logged,
                            }
                        )

            async with trio.open_nursery() as callers:
                for _ in range(calls):
                    callers.start_soon(one)
            nursery.cancel_scope.cancel()

    def stats(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        return {
            "median_ms": statistics.median(values),
            "p95_ms": percentile(values, 0.95),
            "min_ms": min(values),
            "max_ms": max(values),
        }

    return {
        "calls": calls,
        "concurrency": concurrency,
        "realtime": realtime,
        "failed": failures,
        "refused": refused,
        "turns": turns,
        "answered_correctly": correct,
        "wrong_answers": wrong,
        "vad_hangover_ms": inspect.signature(VoiceActivityDetector)
        .parameters["hangover_ms"]
        .default,
        "greeting_latency": stats(greeting_ms),
        "response_latency": stats(response_ms),
        "longest_gap": stats(gaps_ms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--fast", action="store_true", help="send caller audio as fast as possible")
    parser.add_argument(
        "--capacity",
        type=int,
        default=None,
        help="local calls the server admits at once (default: its own, 2 x cores)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    report = trio.run(run, args.calls, args.concurrency, not args.fast, args.capacity)
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    report["cpu_s"] = {
        name: round(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime, 1)
        for name, b, a in zip(("this_process", "children"), before, after, strict=True)
    }
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(
        f"{report['calls']} calls, {report['concurrency']} at a time, "
        f"{'real time' if report['realtime'] else 'fast'}; failed: {report['failed']}; "
        f"refused (busy): {report['refused']}; "
        f"answered correctly: {report['answered_correctly']} of {report['turns']} turns"
    )
    for turn in report["wrong_answers"]:
        print(f"  wrong: {turn}")
    for name in ("greeting_latency", "response_latency", "longest_gap"):
        s = report[name]
        if s:
            print(
                f"  {name.replace('_', ' '):17} median {s['median_ms']:7.1f} ms"
                f"   p95 {s['p95_ms']:7.1f} ms"
                f"   (min {s['min_ms']:.1f}, max {s['max_ms']:.1f})"
            )
    print(f"  (response latency includes the VAD hangover of {report['vad_hangover_ms']} ms)")
    print(
        f"  CPU: {report['cpu_s']['this_process']} s in this process (server and callers), "
        f"{report['cpu_s']['children']} s in child processes (speech workers, PostgreSQL)"
    )
    print(
        "  greeting budget 500 ms (p95): "
        + ("met" if report["greeting_latency"].get("p95_ms", 1e9) <= 500 else "MISSED")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
