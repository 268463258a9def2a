"""End to end: ``GET /metrics`` after phone calls with a failover and a tool error.

A real server on loopback (hypercorn, in-process) on a fresh database of the
session's PostgreSQL. The agent's first provider is ``openai-realtime`` at an
address where nothing listens (its connection fails: a provider error, then a
failover to ``local``), ``gemini-live`` has no key (skipped), and the caller's
first line makes the ``local`` provider call a webhook tool whose address the
tenant's allowlist does not name (the SSRF rules refuse it: a tool error). The
calls are placed as Twilio would (``switchboard call``'s client). The
exposition is parsed with ``prometheus-client``'s own parser, and the server's
log lines are captured with the call's ids merged from context.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import structlog
import trio
from prometheus_client.parser import text_string_to_metric_families

from switchboard.actors.providers import Endpoints
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.caller import CallerLine, CallSummary, place_call
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.server import serve
from switchboard.orchestrator.store import Store

NUMBER = "+15005550088"
AGENT_YAML = """
name: metered-line
tenant: metered
greeting: Thanks for calling the bakery.
mode: openai-realtime
fallback: [gemini-live]
phone_numbers: ["{number}"]
idle_timeout_seconds: 30
failover: {{cooldown_seconds: 0}}  # each call tries openai-realtime first again
intents:
  - name: order
    phrases: [where is my order]
    tool: check_order
    reply: Your order {{result}}.
  - name: bye
    phrases: [thank you goodbye]
    reply: Goodbye.
tools:
  - name: check_order
    description: Where the caller's order is.
    url: http://127.0.0.1:9/orders
    timeout_ms: 4000
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Line:
    url: str
    api_key: str
    data_dir: Path

    async def call(self, *lines: str) -> CallSummary:
        return await place_call(
            self.url,
            [CallerLine.say(line) for line in lines],
            to_number=NUMBER,
            auth_token="test-auth-token",
            api_key=self.api_key,
            realtime=False,
        )

    async def metrics(self) -> Samples:
        async with httpx.AsyncClient() as client:
            response = await client.get(self.url + "/metrics")
        assert response.status_code == 200
        samples: Samples = {}
        for family in text_string_to_metric_families(response.text):
            for s in family.samples:
                samples[(s.name, frozenset(s.labels.items()))] = s.value
        return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def line(database_url: str, tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Line]:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        database_url=database_url,
        twilio_auth_token="test-auth-token",
        playout_lead_ms=60_000,
        log_format="console",
        endpoints=Endpoints(
            openai_realtime_url=f"ws://127.0.0.1:{dead_port()}/v1/realtime",
            openai_api_key="sk-test",
        ),
    )
    urls = await nursery.start(serve, settings)
    agent = parse_agent_yaml(AGENT_YAML.format(number=NUMBER))
    with Database(database_url) as db:
        store = Store(db)
        api_key = store.create_api_key(store.apply_agent(agent) and store.ensure_tenant("metered"))
    yield Line(urls[0], api_key, tmp_path)
    nursery.cancel_scope.cancel()


async def test_metrics_move_with_calls_a_failover_and_a_tool_error(line: Line) -> None:
    before = await line.metrics()
    phone, mode = {"door": "twilio.stream"}, {"mode": "openai-realtime"}
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars]
    ) as logs:
        first = await line.call("where is my order", "thank you goodbye")
        second = await line.call("where is my order", "thank you goodbye")
    after = await line.metrics()
    for summary in (first, second):
        assert [t.agent for t in summary.turns][-1] == "Goodbye.", summary.turns
        assert summary.session_id is not None

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Calls: started and ended (the caller hung up) by door and first mode; none active.
    assert moved("switchboard_calls_started_total", **phone, **mode) == 2
    assert moved("switchboard_calls_ended_total", **phone, **mode, reason="caller_hung_up") == 2
    assert value(after, "switchboard_calls_active", **phone, **mode) == 0
    # The provider error and the failover, by provider and kind; gemini-live skipped.
    failover = "switchboard_failover_events_total"
    failed = {
        dict(labels)["detail"]: v - before.get((n, labels), 0.0)
        for (n, labels), v in after.items()
        if n == failover and ("event", "provider.failed") in labels
    }
    assert sum(failed.values()) == 2, failed
    switched = {"event": "failover.switch", "provider": "openai-realtime", "detail": "local"}
    assert moved(failover, **switched) == 2
    skipped = {"event": "provider.skipped", "provider": "gemini-live", "detail": "not_configured"}
    assert moved(failover, **skipped) == 2
    # Latencies: the greeting and each answer, by the mode that spoke (local).
    local = {"mode": "local"}
    assert moved("switchboard_greeting_latency_seconds_count", **local) == 2
    assert moved("switchboard_greeting_latency_seconds_sum", **local) > 0
    assert moved("switchboard_response_latency_seconds_count", **local) >= 4
    answered_s = moved("switchboard_response_latency_seconds_sum", **local)
    # The runtime's figure leaves out the network, and starts once its VAD heard the end:
    # never more than the caller itself measured (end of its speech -> first audio heard).
    heard_s = sum((t.response_latency_ms or 0) / 1e3 for t in first.turns + second.turns)
    assert 0 < answered_s <= heard_s + 0.5, (answered_s, heard_s)
    # The tool: its latency and its error, by kind (no tool names in labels).
    assert moved("switchboard_tool_latency_seconds_count", kind="webhook") == 2
    assert moved("switchboard_tool_errors_total", kind="webhook", error="refused") == 2
    # Every event reached PostgreSQL through the logger: its write lag was measured.
    assert moved("switchboard_event_write_lag_seconds_count") > 0
    assert value(after, "switchboard_spool_journals") == 0

    # The operator's log lines carry the call's ids.
    for summary in (first, second):
        mine = [e for e in logs if e.get("session_id") == summary.session_id]
        by_event = {e["event"]: e for e in mine}
        for event in ("provider.failed", "failover.switch", "tool.failed"):
            assert event in by_event, [e["event"] for e in mine]
            assert by_event[event]["call_sid"] == summary.call_sid
            assert by_event[event]["tenant_id"]
        assert by_event["provider.failed"]["provider"] == "openai-realtime"
        assert by_event["failover.switch"]["to_provider"] == "local"
        tool = by_event["tool.failed"]
        assert (tool["tool"], tool["tool_kind"], tool["error"]) == (
            "check_order",
            "webhook",
            "refused",
        )


async def test_spool_depth_counts_journals_waiting_for_the_database(line: Line) -> None:
    spool = line.data_dir / "spool"
    spool.mkdir(exist_ok=True)
    (spool / "left-behind.jsonl").write_text("not a journal\n")  # the drainer leaves it
    assert value(await line.metrics(), "switchboard_spool_journals") == 1
    (spool / "left-behind.jsonl").unlink()
    assert value(await line.metrics(), "switchboard_spool_journals") == 0
