"""The timeline for a terminal (see :func:`render_text`)."""

from __future__ import annotations

from typing import Final

from .timeline_model import Timeline, Turn, totals

__all__ = ["WIDTH", "render_text"]

WIDTH: Final = 100
"""Columns :func:`render_text` fits a line in (longer texts end in an ellipsis)."""
_SYMBOL: Final = {
    "provider_failed": "!",
    "exhausted": "!",
    "error": "!",
    "failover": ">",
    "reconnect": ">",
    "suppressed": ">",
    "transfer": ">",
    "barge_in": "x",
    "tool_call": "*",
    "tool_result": "*",
    "dead_air": "~",
    "dtmf": "#",
    "consent": ".",
    "hangup": ".",
    "end": ".",
}
_COLOR: Final = {"!": "31;1", ">": "35;1", "x": "33", "~": "33;1", "*": "36", "#": "36", ".": "2"}
_WHO_COLOR: Final = {"caller": "32", "agent": "34"}


def render_text(timeline: Timeline, *, color: bool = False) -> str:
    """The timeline for a terminal, one line per turn, marks between them, fitted to
    :data:`WIDTH` columns::

        session 5b0c...  agent receptionist  door twilio  7.8 s  ended: agent hung up
           0.9s  caller  "what are your opening hours"
           0.9s  agent (+17 ms) "(no transcript: cut off)"
          ! 5.8s provider failed: openai-realtime stall (0 turns done): no output for ...
          > 6.2s failover openai-realtime -> local, caller heard 2.0 s of silence
          ~ 1.0s dead air 4.2 s
        2 caller turns, 3 agent turns; latency median 700 ms, max 5.3 s; 1 failover, ...

    ``color``: ANSI colours (caller green, agent blue, failures red, dead air yellow).
    """

    def paint(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if color else text

    lines = [paint("1", _fit(_header(timeline)))]
    rows: list[tuple[float, int, str]] = []
    for turn in timeline.turns:
        rows.append((turn.start_ms, 1, paint(_WHO_COLOR[turn.who], _fit(_turn_line(turn)))))
    for mark in timeline.marks:
        symbol = _SYMBOL.get(mark.kind, "-")
        line = _fit(f"  {symbol} {mark.t_ms / 1000:.1f}s {mark.text}")
        rows.append((mark.t_ms, 0, paint(_COLOR.get(symbol, "0"), line)))
    rows.sort(key=lambda r: (r[0], r[1]))
    lines += [text for _, _, text in rows]
    lines += [paint("1", _fit(line)) for line in _footer(timeline)]
    return "\n".join(lines) + "\n"


def _fit(line: str, width: int = WIDTH) -> str:
    return line if len(line) <= width else line[: width - 1] + "\u2026"


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s"


def _latency(ms: float) -> str:
    return f"{ms:.0f} ms" if abs(ms) < 1000 else _seconds(ms)


def _header(timeline: Timeline) -> str:
    parts = [
        f"session {timeline.session_id or '?'}",
        f"agent {timeline.agent or '?'}",
        f"door {timeline.door or '?'}",
        _seconds(timeline.duration_ms),
        f"ended: {timeline.end_reason or '?'}",
    ]
    return "  ".join(parts)


def _turn_line(turn: Turn) -> str:
    who: str = turn.who
    if turn.latency_ms is not None:
        who += f" (+{_latency(turn.latency_ms)})"
    if turn.text is None:
        said = "(no transcript: cut off)" if turn.interrupted else "(no transcript)"
    else:
        said = '"' + " ".join(turn.text.split()) + '"'
    notes = [n for n, on in (("greeting", turn.greeting), ("interrupted", turn.interrupted)) if on]
    tail = f" [{', '.join(notes)}]" if notes else ""
    head = f"{turn.start_ms / 1000:7.1f}s  {who}  "
    room = WIDTH - len(head) - len(tail)
    if len(said) > room:
        said = said[: max(room - 1, 0)] + "\u2026"
    return head + said + tail


def _footer(timeline: Timeline) -> list[str]:
    t = totals(timeline)
    parts = [f"{t['caller_turns']} caller turns, {t['agent_turns']} agent turns"]
    if t["latency_median_ms"] is not None:
        median, top = _latency(t["latency_median_ms"]), _latency(t["latency_max_ms"])
        parts.append(f"latency median {median}, max {top}")
    names = (
        ("barge_in", "barge-ins"),
        ("tool_call", "tool calls"),
        ("provider_failed", "provider failures"),
        ("failover", "failovers"),
        ("dead_air", "dead air"),
    )
    counts = [f"{name} {t['marks'].get(kind, 0)}" for kind, name in names]
    return ["; ".join(parts), ", ".join(counts) + f" ({_seconds(t['dead_air_ms'])})"]
