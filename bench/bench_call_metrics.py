"""What the call observer (metrics and log lines) costs per event, beside the journal.

    python bench/bench_call_metrics.py [--calls N] [--json]

Replays the events of a typical call (greeting, six caller turns with
speech events, answers, a tool call each, a provider failure and a
failover) through two per-event consumers of the event logger, interleaved
call by call so machine noise hits both alike:

- ``journal``: :meth:`CallJournal.append` (one ``write(2)`` of a JSON line per
  event, already on every call's path): the reference;
- ``observer``: :meth:`CallObserver.on_logged` (the metrics and, for the
  failure, failover and tool error, a log line, rendered as JSON to
  ``/dev/null``), with ``prometheus-client`` in single-process mode.

Figures: median CPU microseconds per event for each, and the observer's
ratio to the journal. Nothing here runs per audio frame: a call has about
2-5 events per second against 50 frames per second.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import structlog

from switchboard.actors.context import CallContext
from switchboard.actors.failover.metrics import FailoverMetrics
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.call_metrics import CallMetrics, CallObserver
from switchboard.orchestrator.journal import CallJournal
from switchboard.orchestrator.store import EventRow

AGENT = parse_agent_yaml(
    "name: b\ntenant: t\ngreeting: hi\nintents: []\n"
    "tools:\n  - name: check_order\n    description: d\n    url: https://shop.example/o\n"
)


def call_events() -> list[EventRow]:
    events: list[tuple[str, dict[str, Any]]] = [
        ("session.start", {"provider": "openai-realtime", "chain": ["openai-realtime", "local"]}),
        ("provider.failed", {"provider": "openai-realtime", "kind": "disconnect", "turn": 0}),
        ("provider.ready", {"provider": "local"}),
        ("response.start", {"response_id": "greeting#g2", "greeting": True}),
        ("failover.switch", {"from": "openai-realtime", "to": "local", "turn": 0}),
        ("response.audio", {"response_id": "greeting#g2", "greeting": True}),
        ("turn:agent", {"text": "Thanks for calling.", "response_id": "greeting#g2"}),
        ("response.done", {"response_id": "greeting#g2", "greeting": True}),
    ]
    for turn in range(6):
        rid = f"resp_{turn}#g2"
        events += [
            ("speech.started", {"audio_offset_ms": 100.0}),
            ("speech.stopped", {"audio_offset_ms": 900.0}),
            ("turn:user", {"text": "where is my order", "intent": "order"}),
            ("response.start", {"response_id": rid, "greeting": False}),
            ("tool:call", {"call_id": f"c{turn}", "name": "check_order", "arguments": {}}),
            (
                "tool:result",
                {"call_id": f"c{turn}", "name": "check_order", "ok": turn != 3, "latency_ms": 80.0}
                | ({"error": "timeout"} if turn == 3 else {}),
            ),
            ("response.audio", {"response_id": rid, "greeting": False}),
            ("turn:agent", {"text": "Your order ships tomorrow.", "response_id": rid}),
            ("response.done", {"response_id": rid, "greeting": False}),
            ("playback.marked", {"name": f"response:{rid}"}),
        ]
    events.append(("session.end", {"reason": "caller hung up", "turns_completed": 6}))
    now = datetime.now(UTC)
    return [EventRow(i + 1, t, now, float(i * 100), p) for i, (t, p) in enumerate(events)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed at the end
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.WriteLoggerFactory(devnull),
    )
    rows = call_events()
    metrics, failover = CallMetrics(), FailoverMetrics()
    per_event: dict[str, list[float]] = {"journal": [], "observer": []}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.calls):
            ctx = CallContext(uuid4(), uuid4(), uuid4(), AGENT, t0=0.0)
            journal = CallJournal(Path(folder), ctx.tenant_id, ctx.session_id, rows[0].ts)
            started = time.process_time()
            for row in rows:
                journal.append(row)
            per_event["journal"].append((time.process_time() - started) / len(rows))
            journal.close(keep=False)
            observer = CallObserver(ctx, "twilio.stream", metrics, failover)
            started = time.process_time()
            for row in rows:
                observer.on_logged(row)
            per_event["observer"].append((time.process_time() - started) / len(rows))
    devnull.close()
    figures = {name: statistics.median(v) * 1e6 for name, v in per_event.items()}
    result = {
        "events_per_call": len(rows),
        "journal_us_per_event": round(figures["journal"], 2),
        "observer_us_per_event": round(figures["observer"], 2),
        "observer_to_journal": round(figures["observer"] / figures["journal"], 2),
    }
    if args.json:
        json.dump(result, sys.stdout)
        print()
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
