"""What ``switchboard replay`` prints: the verdict, the events around a divergence, and
for a what-if how the caller's experience would differ.

Text for a person (:func:`render_comparison`, :func:`render_experience`) and the
same content as JSON data (:func:`comparison_json`, :func:`experience`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .api import EventRow
from .compare import Comparison

__all__ = [
    "comparison_json",
    "experience",
    "render_comparison",
    "render_experience",
]

CONTEXT_EVENTS = 4
"""Events shown before and after the first divergence."""


def render_comparison(
    comparison: Comparison, expected: Sequence[EventRow], got: Sequence[EventRow]
) -> str:
    """The verdict in one line; when the replay differs, the first divergence and a
    side-by-side of the recorded and replayed events around it."""
    if comparison.first is None:
        return (
            f"MATCH: the replay has the recording's {comparison.expected_count} events in the"
            f" same order with the same payloads (times within {comparison.tolerance_ms:g} ms)."
        )
    first = comparison.first
    got = comparison.got_in_order or got
    lines = [
        f"DIFFERS: {first.describe()}",
        f"  recorded {comparison.expected_count} events, replayed {comparison.got_count}",
        "",
        f"  {'#':>4}  {'recorded':<46}  replayed",
    ]
    start = max(0, first.index - CONTEXT_EVENTS)
    stop = min(max(len(expected), len(got)), first.index + CONTEXT_EVENTS + 1)
    for index in range(start, stop):
        left = _cell(expected[index] if index < len(expected) else None)
        right = _cell(got[index] if index < len(got) else None)
        marker = ">" if index == first.index else " "
        lines.append(f"{marker} {index + 1:>4}  {left:<46}  {right}")
    return "\n".join(lines)


def _cell(event: EventRow | None, width: int = 46) -> str:
    if event is None:
        return "-"
    text = f"{event['t_ms'] / 1000:8.3f}s {event['type']}{_gist(event)}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _gist(event: EventRow) -> str:
    """The payload's telling part for a table cell."""
    p = event.get("payload") or {}
    for key in ("text", "reason", "kind", "name", "provider", "to"):
        if key in p and p[key] not in (None, ""):
            return f" {p[key]!s}"
    return ""


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON data: ``matches``, the counts, the tolerance and the first
    divergence (``index`` 0-based, ``what``, ``t_ms``, ``expected``, ``got``, ``message``)."""
    first = comparison.first
    return {
        "matches": comparison.matches,
        "recorded_events": comparison.expected_count,
        "replayed_events": comparison.got_count,
        "tolerance_ms": comparison.tolerance_ms,
        "first_divergence": None
        if first is None
        else {
            "index": first.index,
            "what": first.what,
            "t_ms": first.t_ms,
            "expected": first.expected,
            "got": first.got,
            "message": first.describe(),
        },
    }


# -- what-if: the caller's experience ------------------------------------------------


def experience(events: Sequence[EventRow]) -> dict[str, Any]:
    """What the caller lived through, from a call's events: how long it lasted and how
    it ended, each answer the agent gave, how long the caller waited for each answer
    (from the end of their speech to the answer's start), each provider failure and
    failover (with the silence the caller heard), each tool call, each barge-in."""
    waits: list[dict[str, Any]] = []
    spoke_at: float | None = None
    out: dict[str, Any] = {
        "answers": [],
        "waits": waits,
        "failures": [],
        "failovers": [],
        "tool_calls": [],
        "barge_ins": 0,
    }
    for e in events:
        p, t = e.get("payload") or {}, float(e["t_ms"])
        kind = e["type"]
        if kind == "speech.stopped" or (kind == "turn:user" and spoke_at is None):
            spoke_at = t
        elif kind == "response.start" and not p.get("greeting"):
            if spoke_at is not None:
                waits.append({"t_ms": spoke_at, "wait_ms": round(t - spoke_at, 1)})
            spoke_at = None
        elif kind == "turn:agent":
            out["answers"].append(str(p.get("text")))
        elif kind == "provider.failed":
            out["failures"].append(
                {"t_ms": t, "provider": p.get("provider"), "kind": p.get("kind")}
            )
        elif kind == "failover.switch":
            out["failovers"].append(
                {"t_ms": t, "from": p.get("from"), "to": p.get("to"), "gap_ms": p.get("gap_ms")}
            )
        elif kind == "tool:call":
            out["tool_calls"].append({"t_ms": t, "name": p.get("name")})
        elif kind == "barge_in":
            out["barge_ins"] += 1
        elif kind == "session.end":
            out["end_reason"] = p.get("reason")
            out["duration_ms"] = p.get("duration_ms")
            out["turns_completed"] = p.get("turns_completed")
    out["longest_wait_ms"] = max((w["wait_ms"] for w in waits), default=0.0)
    out["silence_at_failovers_ms"] = round(
        sum(float(f["gap_ms"] or 0.0) for f in out["failovers"]), 1
    )
    return out


def render_experience(recorded: dict[str, Any], what_if: dict[str, Any], label: str) -> str:
    """The two experiences side by side, then the answers that changed."""

    def first(items: list[dict[str, Any]]) -> str:
        return f"{items[0]['t_ms'] / 1000:.3f} s" if items else "-"

    rows = [
        ("failovers", len(recorded["failovers"]), len(what_if["failovers"])),
        ("first failover at", first(recorded["failovers"]), first(what_if["failovers"])),
        ("provider failures", len(recorded["failures"]), len(what_if["failures"])),
        ("first failure at", first(recorded["failures"]), first(what_if["failures"])),
        (
            "dead air",
            f"{recorded.get('dead_air_ms', 0):g} ms",
            f"{what_if.get('dead_air_ms', 0):g} ms",
        ),
        (
            "silence at failovers",
            f"{recorded['silence_at_failovers_ms']:g} ms",
            f"{what_if['silence_at_failovers_ms']:g} ms",
        ),
        (
            "longest wait for an answer",
            f"{recorded['longest_wait_ms']:g} ms",
            f"{what_if['longest_wait_ms']:g} ms",
        ),
        ("answers", len(recorded["answers"]), len(what_if["answers"])),
        ("tool calls", _names(recorded), _names(what_if)),
        ("barge-ins", recorded["barge_ins"], what_if["barge_ins"]),
        ("turns completed", recorded.get("turns_completed"), what_if.get("turns_completed")),
        ("ended", recorded.get("end_reason"), what_if.get("end_reason")),
        ("duration", _secs(recorded.get("duration_ms")), _secs(what_if.get("duration_ms"))),
    ]
    width = max(len("as recorded"), *(len(str(a)) for _, a, _ in rows))
    lines = [f"  {'the caller':<28}  {'as recorded':<{width}}  {label}"]
    for name, a, b in rows:
        mark = " " if a == b else "*"
        lines.append(f"{mark} {name:<28}  {a!s:<{width}}  {b!s}")
    changed = [
        (i, a, b)
        for i, (a, b) in enumerate(_pairs(recorded["answers"], what_if["answers"]))
        if a != b
    ]
    if changed:
        lines.append("  answers that differ:")
        for i, a, b in changed[:10]:
            lines.append(f"    {i + 1}. recorded: {_quote(a)}")
            lines.append(f"       {label}: {_quote(b)}")
    return "\n".join(lines)


def _names(exp: dict[str, Any]) -> str:
    return ", ".join(str(c["name"]) for c in exp["tool_calls"]) or "-"


def _secs(ms: Any) -> str:
    return f"{float(ms) / 1000:.1f} s" if isinstance(ms, int | float) else "-"


def _pairs(a: list[str], b: list[str]) -> list[tuple[str | None, str | None]]:
    return [
        (a[i] if i < len(a) else None, b[i] if i < len(b) else None)
        for i in range(max(len(a), len(b)))
    ]


def _quote(text: str | None, limit: int = 90) -> str:
    if text is None:
        return "(none)"
    return f'"{text}"' if len(text) <= limit else f'"{text[: limit - 1]}…"'
