"""Compare a replay's events with the recorded ones; point at the first divergence.

Two event lists match when they have the same events in the same order, each
with the same type and payload, and with times that agree within
``tolerance_ms``. The tolerance covers what a recording made on the wall
clock carries and a replay on virtual time does not: each event of the
original call came a few milliseconds after its cause (the time its Python
took), while in a replay it comes at the cause's instant. It applies to
``t_ms`` and to the payload's durations and offsets (keys ending in ``_ms``:
``gap_ms``, ``heard_ms``, ``clear_after_ms``, ``duration_ms``...). Two replays
of one trace are compared with ``tolerance_ms=0``: they must be identical.
With a tolerance, events that came within it of each other may also come in
another order: on the wall clock, the events two actors log for one cause (the
supervisor ending an interrupted answer, the transport reporting the barge-in)
are ordered by which task ran first, which Trio leaves to chance; on virtual
time they are ordered by the replay's seeded scheduler.
``ignore`` names payload fields a what-if changes by design (the agent version of
a changed agent), as ``(event type, key)``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .api import EventRow

__all__ = ["DEFAULT_TOLERANCE_MS", "Comparison", "Divergence", "compare_events"]

DEFAULT_TOLERANCE_MS = 250.0
"""How far a replayed time may be from the recorded one (ms). A recording's events lag
their causes by the call's processing time, normally a few ms and on a loaded machine
up to a few hundred; a real divergence (a failover at another turn, a stall timeout
changed by a second) is larger."""


@dataclass(frozen=True)
class Divergence:
    """Where the replay first differs: position ``index`` (0-based) in both lists, the
    recorded and the replayed event there (None past the end of a list), what differs
    (``"type"``, ``"t_ms"``, ``"payload.<key>"``, ``"missing"``, ``"extra"``) and when,
    on the call's clock (ms)."""

    index: int
    expected: EventRow | None
    got: EventRow | None
    what: str
    t_ms: float

    def describe(self) -> str:
        """One sentence: which event, expected what, got what, when."""
        at = f"at {self.t_ms / 1000:.3f} s (event {self.index + 1})"
        if self.expected is None and self.got is not None:
            return f"{at}: the replay has an extra {self.got['type']} event"
        if self.got is None and self.expected is not None:
            return f"{at}: the replay ends before the recorded {self.expected['type']} event"
        assert self.expected is not None and self.got is not None
        if self.what == "type":
            return f"{at}: expected {self.expected['type']}, got {self.got['type']}"
        if self.what == "t_ms":
            return (
                f"{at}: {self.expected['type']} came at {self.got['t_ms']:.1f} ms,"
                f" recorded at {self.expected['t_ms']:.1f} ms"
            )
        key = self.what.removeprefix("payload.")
        return (
            f"{at}: {self.expected['type']} {key} expected"
            f" {_short(self.expected['payload'].get(key, '<absent>'))},"
            f" got {_short(self.got['payload'].get(key, '<absent>'))}"
        )


@dataclass(frozen=True)
class Comparison:
    """The outcome: ``matches``, the first divergence (None when they match), the counts."""

    matches: bool
    first: Divergence | None
    expected_count: int
    got_count: int
    tolerance_ms: float
    got_in_order: tuple[EventRow, ...] = ()
    """The replayed events in the order they were compared (see the module docstring)."""


def compare_events(
    expected: Sequence[EventRow],
    got: Sequence[EventRow],
    *,
    tolerance_ms: float = DEFAULT_TOLERANCE_MS,
    ignore: Collection[tuple[str, str]] = (),
) -> Comparison:
    """Compare recorded ``expected`` with replayed ``got`` (see the module docstring)."""
    if tolerance_ms > 0:
        got = _aligned(expected, got, tolerance_ms, ignore)
    for index in range(max(len(expected), len(got))):
        want = expected[index] if index < len(expected) else None
        have = got[index] if index < len(got) else None
        what = _difference(want, have, tolerance_ms, ignore)
        if what is not None:
            when = (want or have or {}).get("t_ms", 0.0)
            first = Divergence(index, want, have, what, float(when))
            return Comparison(False, first, len(expected), len(got), tolerance_ms, tuple(got))
    return Comparison(True, None, len(expected), len(got), tolerance_ms, tuple(got))


def _aligned(
    expected: Sequence[EventRow],
    got: Sequence[EventRow],
    tolerance_ms: float,
    ignore: Collection[tuple[str, str]],
) -> list[EventRow]:
    """``got`` in the recording's order where it differs only among events within
    ``tolerance_ms`` of each other: each recorded event takes the first replayed one
    that matches it among the next replayed events that close in time; from the first
    recorded event with no such match on, ``got`` keeps its own order."""
    rest = list(got)
    out: list[EventRow] = []
    for want in expected:
        if not rest:
            break
        start = float(rest[0]["t_ms"])
        near = 0
        while near < len(rest) and float(rest[near]["t_ms"]) - start <= tolerance_ms:
            near += 1
        match = next(
            (i for i in range(near) if _difference(want, rest[i], tolerance_ms, ignore) is None),
            None,
        )
        if match is None:
            break
        out.append(rest.pop(match))
    return out + rest


def _difference(
    want: EventRow | None,
    have: EventRow | None,
    tolerance_ms: float,
    ignore: Collection[tuple[str, str]],
) -> str | None:
    if want is None:
        return "extra"
    if have is None:
        return "missing"
    if want["type"] != have["type"]:
        return "type"
    if not _close(want["t_ms"], have["t_ms"], tolerance_ms):
        return "t_ms"
    a, b = want.get("payload") or {}, have.get("payload") or {}
    for key in sorted(set(a) | set(b)):
        if (want["type"], key) in ignore:
            continue
        if not _same(key, a.get(key, _ABSENT), b.get(key, _ABSENT), tolerance_ms):
            return f"payload.{key}"
    return None


_ABSENT = object()


def _same(key: str, a: Any, b: Any, tolerance_ms: float) -> bool:
    if key.endswith("_ms") and _number(a) and _number(b):
        return _close(a, b, tolerance_ms)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_same(k, a[k], b[k], tolerance_ms) for k in a)
    return bool(a == b)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _close(a: Any, b: Any, tolerance_ms: float) -> bool:
    if not (_number(a) and _number(b)):
        return bool(a == b)
    return abs(float(a) - float(b)) <= tolerance_ms


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
