"""The comparison of a wall-clock recording with its replay: events of one moment in
either order, nothing else."""

from __future__ import annotations

from typing import Any

from switchboard.orchestrator.replay.compare import compare_events
from switchboard.orchestrator.replay.report import render_comparison


def row(seq: int, type_: str, t_ms: float, **payload: Any) -> dict[str, Any]:
    return {"seq": seq, "type": type_, "t_ms": t_ms, "payload": payload}


# A barge-in as the runtime logged it on the wall clock: the supervisor ended the answer
# before the transport reported the clear (3 ms of Python later).
RECORDED = [
    row(1, "speech.started", 4884.4, audio_offset_ms=4860.0),
    row(2, "turn:agent", 4885.3, text="We are open", interrupted=True),
    row(3, "response.done", 4887.3, interrupted=True),
    row(4, "barge_in", 4887.7, heard_ms=1100.0),
    row(5, "session.end", 9000.0, reason="caller hung up"),
]
# The replay, on virtual time: the transport's task ran first at the same instant.
REPLAYED = [RECORDED[0], RECORDED[3], RECORDED[1], RECORDED[2], RECORDED[4]]


def test_events_of_one_moment_in_another_order_match_within_the_tolerance() -> None:
    comparison = compare_events(RECORDED, REPLAYED)
    assert comparison.matches and comparison.first is None


def test_two_replays_are_compared_exactly_so_any_other_order_differs() -> None:
    comparison = compare_events(RECORDED, REPLAYED, tolerance_ms=0)
    assert not comparison.matches and comparison.first is not None
    assert comparison.first.describe().endswith("expected turn:agent, got barge_in")


def test_an_event_moved_further_than_the_tolerance_differs_and_the_report_shows_it() -> None:
    late = [RECORDED[0], RECORDED[1], RECORDED[2], RECORDED[4], {**RECORDED[3], "t_ms": 9100.0}]
    comparison = compare_events(RECORDED, late)
    assert not comparison.matches and comparison.first is not None
    assert comparison.first.index == 3
    assert comparison.first.describe().endswith("expected barge_in, got session.end")
    report = render_comparison(comparison, RECORDED, late)
    marked = next(line for line in report.splitlines() if line.startswith(">"))
    assert "barge_in" in marked and "session.end" in marked


def test_a_payload_that_differs_is_not_hidden_by_a_reorder() -> None:
    heard_less = [*REPLAYED]
    heard_less[1] = {**RECORDED[3], "payload": {"heard_ms": 700.0}}
    comparison = compare_events(RECORDED, heard_less, tolerance_ms=250)
    assert not comparison.matches and comparison.first is not None
    assert comparison.first.index == 3  # turn:agent, response.done found; barge_in not
    assert comparison.first.what == "payload.heard_ms"
    assert "expected 1100.0, got 700.0" in comparison.first.describe()
