"""One replay as ``switchboard replay`` runs it: replay, compare, explain, draw.

:func:`replay_and_report` returns the text for a person, the same as JSON data,
and the exit status (0 the replay matches, 1 it differs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..trace_file import Trace
from .api import WhatIf
from .compare import DEFAULT_TOLERANCE_MS, compare_events
from .engine import replay_call
from .recorded_call import recorded_call
from .report import comparison_json, experience, render_comparison, render_experience
from .timeline import build_timeline, render_text, timeline_json, totals
from .timeline_page import write_timeline_html

__all__ = ["WHAT_IF_CHANGES", "ReplayReport", "replay_and_report"]

WHAT_IF_CHANGES = frozenset({("session.start", "agent_version")})
"""What a what-if changes by design, left out of its comparison (a changed agent is
another version; the report says what changed)."""


@dataclass(frozen=True)
class ReplayReport:
    text: str
    data: dict[str, Any]
    exit_status: int


def replay_and_report(
    trace: Trace,
    what_if: WhatIf,
    *,
    tolerance_ms: float | None = None,
    silence_ms: float = 3000.0,
    timeline: bool = True,
    html: Path | None = None,
) -> ReplayReport:
    """Replay ``trace`` (against ``what_if``), compare with the recording, and report.

    Raises:
        Unreplayable: the trace cannot be replayed.
        ConfigError: the what-if does not make a valid agent.
        OSError: ``html`` cannot be written.
    """
    call = recorded_call(trace)
    started = time.perf_counter()
    replay = replay_call(call, what_if)
    wall_s = time.perf_counter() - started
    tolerance = DEFAULT_TOLERANCE_MS if tolerance_ms is None else tolerance_ms
    ignore = WHAT_IF_CHANGES if what_if.changed else ()
    comparison = compare_events(call.events, replay.events, tolerance_ms=tolerance, ignore=ignore)
    m = trace.manifest
    header = (
        f"session {m.get('session_id')} · agent {(m.get('agent') or {}).get('name')} ·"
        f" door {call.door} · {call.duration_ms / 1000:.1f} s · {len(call.events)} events"
    )
    played = ", ".join(
        f"{p['source']} <- {p['played'] or 'nothing recorded'}" for p in replay.providers
    )
    lines = [header, f"replayed in {wall_s:.3f} s of wall time; providers: {played}"]
    data: dict[str, Any] = {
        "session_id": m.get("session_id"),
        "door": call.door,
        "duration_ms": call.duration_ms,
        "replay": {
            "wall_s": round(wall_s, 4),
            "events": len(replay.events),
            "end_reason": replay.end_reason,
            "turns_completed": replay.turns_completed,
            "providers": replay.providers,
        },
        "comparison": comparison_json(comparison),
    }
    # The timeline: the call as recorded (from its audio), or the what-if's (from events).
    shown = replay.events if what_if.changed else call.events
    line = build_timeline(
        shown,
        silence_ms=silence_ms,
        records=None if what_if.changed else trace.records,
        session_id=str(call.session_id),
        door=call.door,
    )
    data["timeline"] = timeline_json(line)
    if timeline:
        lines += ["", render_text(line).rstrip("\n")]
    if what_if.changed:
        label = _label(what_if)
        recorded, changed = experience(call.events), experience(replay.events)
        # Dead air from the events on both sides (a what-if has no audio): the what-if's
        # is the timeline above.
        as_recorded = build_timeline(call.events, silence_ms=silence_ms)
        recorded["dead_air_ms"] = totals(as_recorded)["dead_air_ms"]
        changed["dead_air_ms"] = totals(line)["dead_air_ms"]
        data["what_if"] = {
            "label": label,
            "experience": {"recorded": recorded, "what_if": changed},
        }
        lines += ["", f"What if {label}:", render_experience(recorded, changed, label)]
    lines += ["", render_comparison(comparison, call.events, replay.events)]
    if html is not None:
        write_timeline_html(
            html,
            shown,
            None if what_if.changed else trace.records,
            call.caller_format,
            session_id=str(call.session_id),
            door=call.door,
            silence_ms=silence_ms,
        )
        lines.append(
            f"wrote {html}" + ("" if what_if.changed else f" and {html.with_suffix('.wav')}")
        )
        data["html"] = str(html)
    status = 0 if comparison.matches else 1
    data["exit"] = status
    return ReplayReport("\n".join(lines), data, status)


def _label(what_if: WhatIf) -> str:
    parts = [f"{k}={v}" for k, v in what_if.settings.items()]
    if what_if.agent is not None:
        parts.append(f"agent {what_if.agent.name}")
    if what_if.chain:
        parts.append("chain " + ",".join(what_if.chain))
    if what_if.against:
        parts.append(f"against {what_if.against}")
    return "; ".join(parts)
