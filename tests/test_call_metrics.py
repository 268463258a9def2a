"""The call observer: what each event sequence does to the metrics and the log.

Event rows are fed as the event logger would (``on_logged``), in the orders the
providers really produce: OpenAI Realtime reports the end of speech and
answers before the caller's transcript arrives; Gemini Live reports no end of
speech (the transcript stands for it); typed lines have no speech at all.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import structlog
from prometheus_client import CollectorRegistry

from switchboard.actors.context import CallContext
from switchboard.actors.failover.metrics import FailoverMetrics
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.call_metrics import CallMetrics, CallObserver, end_reason_class
from switchboard.orchestrator.journal import CallJournal
from switchboard.orchestrator.metrics import waiting_journals
from switchboard.orchestrator.store import EventRow

AGENT = parse_agent_yaml(
    """
name: desk
tenant: t
greeting: hi
intents: []
tools:
  - name: check_order
    description: Where the order is.
    url: https://shop.example/orders
"""
)


class Call:
    def __init__(self, door: str = "realtime") -> None:
        self.registry = CollectorRegistry()
        self.failover = FailoverMetrics(self.registry)
        self.observer = CallObserver(
            CallContext(uuid4(), uuid4(), uuid4(), AGENT, t0=0.0),
            door,
            CallMetrics(self.registry),
            self.failover,
        )
        self.seq = 0

    def at(self, t_ms: float, type_: str, **payload: Any) -> None:
        self.seq += 1
        row = EventRow(self.seq, type_, datetime.now(UTC), t_ms, payload)
        self.observer.on_logged(row)

    def value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def test_openai_order_one_latency_per_caller_turn_from_the_end_of_speech() -> None:
    call = Call()
    call.at(1, "session.start", provider="openai-realtime", chain=["openai-realtime", "local"])
    call.at(300, "response.audio", response_id="greeting#g1", greeting=True)
    call.at(2000, "speech.started")
    call.at(3000, "speech.stopped")
    call.at(3400, "response.audio", response_id="r1#g1", greeting=False)
    call.at(3600, "turn:user", text="when are you open")  # the transcript comes late
    call.at(5000, "response.audio", response_id="r2#g1", greeting=False)  # a follow-up
    mode = {"mode": "openai-realtime"}
    assert call.value("switchboard_greeting_latency_seconds_sum", **mode) == 0.3
    assert call.value("switchboard_response_latency_seconds_count", **mode) == 1
    assert call.value("switchboard_response_latency_seconds_sum", **mode) == 0.4


def test_gemini_order_the_transcript_stands_for_the_end_of_speech() -> None:
    call = Call()
    call.at(1, "session.start", provider="gemini-live", chain=["gemini-live", "local"])
    call.at(1000, "turn:user", text="hello")
    call.at(1250, "response.audio", response_id="g1#g1", greeting=False)
    call.at(2000, "turn:user", text="typed", typed=True)
    call.at(2100, "response.audio", response_id="g2#g1", greeting=False)
    assert call.value("switchboard_response_latency_seconds_count", mode="gemini-live") == 2
    assert call.value("switchboard_response_latency_seconds_sum", mode="gemini-live") == 0.35


def test_after_a_failover_latency_is_the_new_providers() -> None:
    call = Call()
    call.at(1, "session.start", provider="openai-realtime", chain=["openai-realtime", "local"])
    call.at(900, "speech.stopped")
    with structlog.testing.capture_logs() as logs:
        call.at(1000, "provider.failed", provider="openai-realtime", kind="disconnect", turn=0)
        call.at(1800, "failover.switch", **{"from": "openai-realtime", "to": "local"}, turn=0)
    call.at(1800, "response.audio", response_id="r1#g2", greeting=False)
    call.at(3000, "speech.stopped")
    call.at(3500, "response.audio", response_id="r2#g2", greeting=False)
    # The caller waited through the failover: both waits are local's, the first one long.
    assert call.value("switchboard_response_latency_seconds_count", mode="local") == 2
    assert call.value("switchboard_response_latency_seconds_sum", mode="local") == 1.4
    assert call.value("switchboard_response_latency_seconds_count", mode="openai-realtime") == 0
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("provider.failed", "warning"),
        ("failover.switch", "warning"),
    ]


def test_calls_started_active_and_ended_by_a_bounded_reason() -> None:
    call = Call("browser.voice")
    call.at(1, "session.start", provider="local", chain=["local"])
    labels = {"door": "browser.voice", "mode": "local"}
    assert call.value("switchboard_calls_started_total", **labels) == 1
    assert call.value("switchboard_calls_active", **labels) == 1
    call.at(9000, "session.end", reason="no caller speech for 10 s")
    call.observer.close()  # run_call's finally: never a second decrement
    assert call.value("switchboard_calls_active", **labels) == 0
    assert call.value("switchboard_calls_ended_total", **labels, reason="idle") == 1


def test_a_call_that_ends_without_session_end_is_no_longer_active() -> None:
    call = Call()
    call.at(1, "session.start", provider="something-new", chain=["something-new"])
    call.observer.close()
    assert call.value("switchboard_calls_active", door="realtime", mode="other") == 0
    assert call.value("switchboard_calls_started_total", door="realtime", mode="other") == 1


def test_end_reasons_fall_into_a_few_classes() -> None:
    assert end_reason_class("caller hung up") == "caller_hung_up"
    assert end_reason_class("gave up; transfer failed (rest_error)") == "gave_up"
    assert end_reason_class("transport failed: bad frame") == "transport_failed"
    assert end_reason_class("error: ValueError: boom") == "crashed"
    assert end_reason_class("something a later release adds") == "other"


def test_tool_errors_by_kind_and_a_logged_line_without_tool_names_in_labels() -> None:
    call = Call()
    with structlog.testing.capture_logs() as logs:
        call.at(10, "tool:result", name="check_order", ok=False, error="timeout", latency_ms=4000)
        call.at(20, "tool:result", name="made_up", ok=False, error="unknown_tool", latency_ms=1)
        call.at(30, "tool:result", name="check_order", ok=False, error="weird!", latency_ms=2)
        call.at(40, "tool:result", name="check_order", ok=True, latency_ms=120)
    assert call.value("switchboard_tool_errors_total", kind="webhook", error="timeout") == 1
    assert call.value("switchboard_tool_errors_total", kind="unknown", error="unknown_tool") == 1
    assert call.value("switchboard_tool_errors_total", kind="webhook", error="other") == 1
    assert call.value("switchboard_tool_latency_seconds_count", kind="webhook") == 3
    assert call.value("switchboard_tool_latency_seconds_sum", kind="webhook") == 4.122
    failed = [e for e in logs if e["event"] == "tool.failed"]
    assert [(e["tool"], e["error"]) for e in failed] == [
        ("check_order", "timeout"),
        ("made_up", "unknown_tool"),
        ("check_order", "weird!"),
    ]


def test_a_skipped_provider_is_counted_with_a_bounded_reason() -> None:
    call = Call()
    call.at(2, "provider.skipped", provider="gemini-live", reason="needs GEMINI_API_KEY (not set)")
    call.at(3, "provider.skipped", provider="typo-mode", reason="unknown provider mode 'typo-mode'")
    assert call.failover.count("provider.skipped", "gemini-live", "not_configured") == 1
    assert call.failover.count("provider.skipped", "other", "unknown_mode") == 1
    call.at(4, "provider.bad_message", provider="gemini-live", detail="not JSON")
    assert call.failover.count("provider.bad_message", "gemini-live") == 1


def test_write_lag_is_the_oldest_rows_wait() -> None:
    call = Call()
    now = datetime.now(UTC)
    rows = [
        EventRow(1, "a", now - timedelta(seconds=2), 0.0, {}),
        EventRow(2, "b", now - timedelta(seconds=1), 1.0, {}),
    ]
    call.observer.on_written(rows)
    assert call.value("switchboard_event_write_lag_seconds_count") == 1
    assert 2.0 <= call.value("switchboard_event_write_lag_seconds_sum") < 3.0


def test_spool_depth_counts_journals_no_live_call_holds(tmp_path: Path) -> None:
    started = datetime.now(UTC)
    live = CallJournal(tmp_path, uuid4(), uuid4(), started)
    left = CallJournal(tmp_path, uuid4(), uuid4(), started)
    left.close(keep=True)  # its call ended while PostgreSQL was away
    try:
        assert waiting_journals(tmp_path) == 1
        assert waiting_journals(tmp_path / "missing") == 0
    finally:
        live.close(keep=False)
    assert waiting_journals(tmp_path) == 1


def test_a_failing_metric_costs_a_log_line_never_the_event_logger() -> None:
    call = Call()

    class Broken:
        def labels(self, *values: str) -> None:
            raise ValueError("a bug in a metric")

    call.observer._metrics.tool_latency = Broken()  # type: ignore[assignment]
    with structlog.testing.capture_logs() as logs:
        call.at(5, "tool:result", name="check_order", ok=True, latency_ms=10.0)  # no raise
        call.at(6, "session.start", provider="local", chain=["local"])
    assert [e["event"] for e in logs] == ["call metrics: event not observed"]
    assert call.value("switchboard_calls_started_total", door="realtime", mode="local") == 1
