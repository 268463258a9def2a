"""Greeting and response latency of real calls to the local agent.

    python bench/bench_calls.py [--calls 20] [--concurrency 2] [--fast] [--json]

Starts a server on an embedded PostgreSQL in a temporary folder, places
``--calls`` calls to the demo agent as Twilio would (signed webhook, Media
Stream in real time: 20 ms frames every 20 ms, silence between lines), each
saying "what are your opening hours", and reports on the caller's side:

- greeting latency: ``start`` sent -> first agent audio received;
- response latency: end of the caller's audio -> first agent audio after it.
  It contains the voice activity detector's end-of-speech hangover (how long
  the caller must be silent before the turn ends), speech recognition, and
  synthesis; the hangover is printed beside it.

Median and p95 over the calls. Design budget: first greeting audio within
500 ms of the call's start.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio

from switchboard.actors.local.vad import VoiceActivityDetector
from switchboard.orchestrator import devcreds
from switchboard.orchestrator.caller import CallerLine, place_call
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.server import serve


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(calls: int, concurrency: int, realtime: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            port=0,
            data_dir=Path(tmp),
            twilio_auth_token="bench",
            log_format="console",
            log_level="warning",
        )
        greeting_ms: list[float] = []
        response_ms: list[float] = []
        failures = 0
        line = CallerLine.say("what are your opening hours")
        async with trio.open_nursery() as nursery:
            (url, *_) = await nursery.start(serve, settings)
            creds = devcreds.load(Path(tmp))
            assert creds is not None
            limiter = trio.CapacityLimiter(concurrency)

            async def one() -> None:
                nonlocal failures
                async with limiter:
                    s = await place_call(
                        url,
                        [line],
                        to_number="+15005550006",
                        auth_token="bench",
                        api_key=None,
                        realtime=realtime,
                    )
                if (
                    s.greeting_latency_ms is None
                    or not s.turns
                    or s.turns[0].response_latency_ms is None
                ):
                    failures += 1
                    return
                greeting_ms.append(s.greeting_latency_ms)
                response_ms.append(s.turns[0].response_latency_ms)

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
        "vad_hangover_ms": inspect.signature(VoiceActivityDetector)
        .parameters["hangover_ms"]
        .default,
        "greeting_latency": stats(greeting_ms),
        "response_latency": stats(response_ms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--fast", action="store_true", help="send caller audio as fast as possible")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = trio.run(run, args.calls, args.concurrency, not args.fast)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    print(
        f"{report['calls']} calls, {report['concurrency']} at a time, "
        f"{'real time' if report['realtime'] else 'fast'}; failed: {report['failed']}"
    )
    for name in ("greeting_latency", "response_latency"):
        s = report[name]
        if s:
            print(
                f"  {name.replace('_', ' '):17} median {s['median_ms']:7.1f} ms"
                f"   p95 {s['p95_ms']:7.1f} ms"
                f"   (min {s['min_ms']:.1f}, max {s['max_ms']:.1f})"
            )
    print(f"  (response latency includes the VAD hangover of {report['vad_hangover_ms']} ms)")
    print(
        "  greeting budget 500 ms (p95): "
        + ("met" if report["greeting_latency"].get("p95_ms", 1e9) <= 500 else "MISSED")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
