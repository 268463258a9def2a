"""The timeline's shapes: :class:`Turn`, :class:`Timeline`, their JSON and totals.

How they are filled in (speech spans, latency, which source wins) is
:mod:`.timeline`'s docstring.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from .timeline_marks import Mark

__all__ = ["Span", "Timeline", "Turn", "Who", "timeline_json", "totals"]

Who = Literal["caller", "agent"]
Span = tuple[float, float]


@dataclass
class Turn:
    """One turn: ``who`` spoke ``text`` from ``start_ms`` (to ``end_ms`` when known; ms
    on the call's clock). Agent turns: ``response_id``, ``latency_ms`` (see
    :mod:`.timeline`, None when not the first answer to a caller turn), ``interrupted``
    (barge-in or cut off by a failure), ``greeting``. ``text`` is None for an answer
    whose transcript never came (a provider failed in it)."""

    who: Who
    start_ms: float
    text: str | None
    end_ms: float | None = None
    response_id: str | None = None
    latency_ms: float | None = None
    latency_from: str | None = None
    interrupted: bool = False
    greeting: bool = False


@dataclass
class Timeline:
    """A call's timeline (see :mod:`.timeline`)."""

    turns: list[Turn]
    marks: list[Mark]
    dead_air: list[Span]
    speech: dict[str, list[Span]]
    speech_from: str
    """``"audio"`` or ``"events"``: where the speech spans (and dead air) came from."""
    duration_ms: float
    silence_ms: float
    session_id: str | None = None
    agent: str | None = None
    door: str | None = None
    end_reason: str | None = None


def timeline_json(timeline: Timeline) -> dict[str, Any]:
    """The timeline as JSON-ready data (the page's data and ``replay --json``'s)::

    {"session_id", "agent", "door", "end_reason", "duration_ms", "silence_ms",
     "speech_from": "audio" | "events",
     "turns": [{"who", "start_ms", "end_ms", "text", "response_id", "latency_ms",
                "latency_from", "interrupted", "greeting"}],
     "marks": [{"t_ms", "kind", "text", "span": [t0, t1] | null, "data"}],
     "dead_air": [[t0, t1]], "speech": {"caller": [[t0, t1]], "agent": [...]},
     "totals": {...}}   (see :func:`totals`)
    """
    return {
        "session_id": timeline.session_id,
        "agent": timeline.agent,
        "door": timeline.door,
        "end_reason": timeline.end_reason,
        "duration_ms": timeline.duration_ms,
        "silence_ms": timeline.silence_ms,
        "speech_from": timeline.speech_from,
        "turns": [asdict(turn) for turn in timeline.turns],
        "marks": [
            {
                "t_ms": m.t_ms,
                "kind": m.kind,
                "text": m.text,
                "span": list(m.span) if m.span else None,
                "data": dict(m.data),
            }
            for m in timeline.marks
        ],
        "dead_air": [list(s) for s in timeline.dead_air],
        "speech": {k: [list(s) for s in v] for k, v in timeline.speech.items()},
        "totals": totals(timeline),
    }


def totals(timeline: Timeline) -> dict[str, Any]:
    """Counts for the footer: turns by side, latency (median and max, ms), and marks by kind;
    ``dead_air_ms`` is the dead air in all."""
    latencies = sorted(t.latency_ms for t in timeline.turns if t.latency_ms is not None)
    kinds: dict[str, int] = {}
    for mark in timeline.marks:
        kinds[mark.kind] = kinds.get(mark.kind, 0) + 1
    return {
        "caller_turns": sum(1 for t in timeline.turns if t.who == "caller"),
        "agent_turns": sum(1 for t in timeline.turns if t.who == "agent"),
        "latency_median_ms": latencies[len(latencies) // 2] if latencies else None,
        "latency_max_ms": latencies[-1] if latencies else None,
        "marks": kinds,
        "dead_air_ms": round(sum(b - a for a, b in timeline.dead_air), 1),
    }
