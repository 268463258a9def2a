"""The timeline's marks: what an event row means to an engineer, in a few words.

:func:`mark_of` turns one event row into a :class:`Mark` (or None for the events
that are not marks: audio, turns, marks of playback...). The payloads read here are
the emitters' (``actors/supervisor.py``, ``actors/tool_executor.py``, the transports,
``orchestrator/call.py``); a field missing from a payload reads as unknown, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["MARK_KINDS", "Mark", "mark_of"]

MARK_KINDS: Final = (
    "barge_in",
    "tool_call",
    "tool_result",
    "provider_failed",
    "failover",
    "reconnect",
    "suppressed",
    "exhausted",
    "transfer",
    "hangup",
    "dtmf",
    "dead_air",
    "consent",
    "error",
    "end",
)
"""Every mark kind; ``dead_air`` marks come from the speech spans, the rest from events."""

_SHORT: Final = 60


@dataclass(frozen=True)
class Mark:
    """Something that happened at ``t_ms`` (ms on the call's clock): ``kind`` (one of
    :data:`MARK_KINDS`), a short ``text``; ``span`` ``(t0, t1)`` for dead air; ``data``
    the event's payload."""

    t_ms: float
    kind: str
    text: str
    span: tuple[float, float] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


def mark_of(row: Mapping[str, Any]) -> Mark | None:
    """The mark of one event row, or None when the event is not one."""
    describe = _DESCRIBE.get(str(row.get("type")))
    if describe is None:
        return None
    payload = row.get("payload")
    p: Mapping[str, Any] = payload if isinstance(payload, Mapping) else {}
    kind, text = describe(p)
    t = row.get("t_ms")
    return Mark(float(t) if isinstance(t, (int, float)) else 0.0, kind, text, data=p)


def _s(ms: Any) -> str:
    return f"{float(ms) / 1000:.1f} s" if isinstance(ms, (int, float)) else "? s"


def _short(value: Any, limit: int = _SHORT) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _barge_in(p: Mapping[str, Any]) -> tuple[str, str]:
    text = f"barge-in: the caller cut the agent off after {_s(p.get('heard_ms'))} heard"
    if isinstance(p.get("clear_after_ms"), (int, float)):
        text += f" (cleared in {p['clear_after_ms']:.0f} ms)"
    return "barge_in", text


def _tool_call(p: Mapping[str, Any]) -> tuple[str, str]:
    return "tool_call", f"tool call {p.get('name')}({_short(p.get('arguments') or {}, 40)})"


def _tool_result(p: Mapping[str, Any]) -> tuple[str, str]:
    outcome = "ok" if p.get("ok") else "FAILED"
    return "tool_result", f"tool {p.get('name')} {outcome}: {_short(p.get('output') or '')}"


def _failed(p: Mapping[str, Any]) -> tuple[str, str]:
    text = f"provider failed: {p.get('provider')} {p.get('kind')} ({p.get('turn')} turns done)"
    if p.get("detail"):
        text += f": {_short(p['detail'])}"
    return "provider_failed", text


def _switch(p: Mapping[str, Any]) -> tuple[str, str]:
    return (
        "failover",
        f"failover {p.get('from')} -> {p.get('to')}, caller heard {_s(p.get('gap_ms'))} of silence",
    )


def _reconnect(p: Mapping[str, Any]) -> tuple[str, str]:
    return "reconnect", f"reconnect to {p.get('provider')} ({p.get('turn')} turns done)"


def _suppressed(p: Mapping[str, Any]) -> tuple[str, str]:
    return "suppressed", f"no switch from {p.get('provider')}: {p.get('reason')}"


def _exhausted(p: Mapping[str, Any]) -> tuple[str, str]:
    then = f"transfer to {p['transfer_to']}" if p.get("transfer_to") else "hang up"
    return "exhausted", f"every provider failed ({p.get('provider')} last): apology, then {then}"


def _transfer(p: Mapping[str, Any]) -> tuple[str, str]:
    if p.get("redirected", True):
        return "transfer", f"transfer to {p.get('number')}"
    return "transfer", f"transfer to {p.get('number')} did not happen: {p.get('reason')}"


def _hangup(p: Mapping[str, Any]) -> tuple[str, str]:
    return "hangup", f"hang-up: {p.get('reason')}"


def _disconnect(p: Mapping[str, Any]) -> tuple[str, str]:
    return "error", f"caller's connection failed: {p.get('reason')}"


def _dtmf(p: Mapping[str, Any]) -> tuple[str, str]:
    return "dtmf", f"caller pressed {p.get('digit')}"


def _consent(p: Mapping[str, Any]) -> tuple[str, str]:
    if not p.get("announced"):
        return "consent", f"recording not announced ({p.get('rule')}, state {p.get('state')})"
    heard = "heard" if p.get("heard") else "NOT heard"
    return "consent", f"recording announced ({p.get('rule')}), {heard}"


def _error(p: Mapping[str, Any]) -> tuple[str, str]:
    what = p.get("reason") or p.get("step") or p.get("exception")
    return "error", f"error in {p.get('where')}: {what} {_short(p.get('detail') or '', 40)}".strip()


def _end(p: Mapping[str, Any]) -> tuple[str, str]:
    return "end", f"call ended: {p.get('reason')} ({p.get('turns_completed')} turns)"


_DESCRIBE: Final[dict[str, Callable[[Mapping[str, Any]], tuple[str, str]]]] = {
    "barge_in": _barge_in,
    "tool:call": _tool_call,
    "tool:result": _tool_result,
    "provider.failed": _failed,
    "failover.switch": _switch,
    "failover.reconnect": _reconnect,
    "failover.suppressed": _suppressed,
    "failover.exhausted": _exhausted,
    "transfer": _transfer,
    "hangup": _hangup,
    "disconnect": _disconnect,
    "dtmf": _dtmf,
    "recording.consent": _consent,
    "error": _error,
    "session.end": _end,
}
