"""Admission control on every door of a real server (one process, real PostgreSQL).

A full server refuses new calls before they start: the Twilio webhook with the
agent's ``when_busy`` TwiML, the browser and ``/v1/realtime`` doors with HTTP
503 and ``Retry-After``, ``/ready`` with 503; a stream whose webhook was
answered is admitted all the same; a draining server refuses the webhook too.
"""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import structlog
import trio
import trio_websocket
from browser_support import Harness, start_harness
from twilio.request_validator import RequestValidator

from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator.admission import Admission, Refused, Ticket
from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.call_table import CallTable
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.errors import ConfigError
from switchboard.orchestrator.metrics import ServerMetrics
from switchboard.orchestrator.runtime import Runtime
from switchboard.orchestrator.server import drain, example_agent_path
from switchboard.orchestrator.store import Store

BUSY_NUMBER = "+15005550100"


@pytest.fixture
async def h(
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    harness = await start_harness(nursery, store, database_url, tmp_path, monkeypatch)
    set_capacity(harness, calls=1, local_calls=1)
    return harness


def set_capacity(h: Harness, *, calls: int, local_calls: int) -> None:
    metrics = ServerMetrics()
    h.rt.admission = Admission.in_process(metrics, max_calls=calls, max_local_calls=local_calls)


async def busy_agent(store: Store, when_busy: str) -> None:
    """The example agent on BUSY_NUMBER with ``when_busy``."""
    agent = replace(
        load_agent_file(example_agent_path()),
        name=f"busy-{when_busy}",
        phone_numbers=(BUSY_NUMBER,),
        when_busy=when_busy,
    )
    await trio.to_thread.run_sync(store.apply_agent, agent)


async def webhook(h: Harness, to: str = BUSY_NUMBER) -> ET.Element:
    """POST Twilio's signed voice webhook; the TwiML answer."""
    url = h.rt.settings.base_url + "/twilio/incoming"
    params = {"CallSid": "CA" + "0" * 32, "From": "+15005550001", "To": to}
    signature = RequestValidator("test-auth-token").compute_signature(url, params)
    async with httpx.AsyncClient() as client:
        response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200, response.text
    return ET.fromstring(response.text)


def stream_parameters(twiml: ET.Element) -> dict[str, str]:
    stream = twiml.find("./Connect/Stream")
    assert stream is not None, ET.tostring(twiml)
    return {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}


async def metrics_text(h: Harness) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(h.url + "/metrics")).text


async def ready(h: Harness) -> tuple[int, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(h.url + "/ready")
    return response.status_code, response.json()


@asynccontextmanager
async def realtime_call(h: Harness) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A ``/v1/realtime`` call (tenant API key) held open until the block ends."""
    url = f"{h.ws_url}/v1/realtime?agent_id={h.agent_id}"
    headers = [(b"authorization", f"Bearer {h.api_key}".encode())]
    async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:
        created = json.loads(await ws.get_message())
        assert created["type"] == "session.created"
        yield ws


async def refused_status(url: str, **kw: Any) -> trio_websocket.ConnectionRejected:
    with pytest.raises(trio_websocket.ConnectionRejected) as caught:
        async with trio_websocket.open_websocket_url(url, **kw):
            pass
    return caught.value


@pytest.mark.parametrize(
    ("when_busy", "expected"),
    [
        ("reject", [("Reject", {"reason": "busy"}, None)]),
        (
            "message",
            [
                (
                    "Say",
                    {},
                    "All our lines are busy right now. Please call again in a few minutes.",
                ),
                ("Hangup", {}, None),
            ],
        ),
        ("transfer", [("Dial", {}, "+15005550009")]),
    ],
)
async def test_a_full_server_answers_the_webhook_with_the_agents_when_busy_twiml(
    h: Harness, store: Store, when_busy: str, expected: list[tuple[str, dict[str, str], str]]
) -> None:
    await busy_agent(store, when_busy)
    stream_parameters(await webhook(h))  # the one call the server has room for
    with structlog.testing.capture_logs() as logs:
        busy = await webhook(h)
    assert [(e.tag, e.attrib, e.text) for e in busy] == expected
    assert h.rows("select count(*) from voice_sessions") == [(1,)]  # nothing made for it
    refusals = [e for e in logs if e["event"] == "call.refused"]
    assert [(e["door"], e["reason"]) for e in refusals] == [("twilio.incoming", "capacity")]
    text = await metrics_text(h)
    assert 'switchboard_calls_refused_total{door="twilio.incoming",reason="capacity"} 1.0' in text
    assert "switchboard_calls_reserved 1.0" in text


async def test_a_stream_whose_webhook_was_answered_is_admitted_while_other_calls_are_refused(
    h: Harness, store: Store
) -> None:
    await busy_agent(store, "reject")
    parameters = stream_parameters(await webhook(h))
    assert await ready(h) == (503, {"status": "full"})
    session = await h.new_session(test_mode=True)
    refused = await refused_status(f"{h.ws_url}/v1/voice?token={session['token']}")
    assert refused.status_code == 503
    assert h.rows("select count(*) from session_token_uses") == [(0,)]  # the token is still good

    encoder = wire.InboundEncoder("MZ" + "1" * 32, "CA" + "0" * 32, "AC" + "2" * 32)
    async with trio_websocket.open_websocket_url(h.ws_url + "/twilio/stream") as ws:
        await ws.send_message(encoder.connected())
        await ws.send_message(encoder.start(parameters))
        with trio.fail_after(20):
            while not isinstance(wire.parse_outbound(await ws.get_message()), wire.OutboundMedia):
                pass  # the greeting: the call runs
        assert 'switchboard_calls_in_progress{door="twilio.stream"} 1.0' in await metrics_text(h)
        await ws.send_message(encoder.stop())


async def test_browser_and_realtime_doors_answer_503_with_retry_after_when_full(
    h: Harness,
) -> None:
    session = await h.new_session(test_mode=True)
    async with realtime_call(h):
        assert await ready(h) == (503, {"status": "full"})
        with structlog.testing.capture_logs() as logs:
            browser = await refused_status(f"{h.ws_url}/v1/voice?token={session['token']}")
            stream = await refused_status(
                f"{h.ws_url}/app/voice/stream/{session['session_id']}?token={session['token']}"
            )
            realtime = await refused_status(
                f"{h.ws_url}/v1/realtime?agent_id={h.agent_id}",
                extra_headers=[(b"authorization", f"Bearer {h.api_key}".encode())],
            )
        for refused in (browser, stream, realtime):
            assert refused.status_code == 503
            assert dict(refused.headers)[b"retry-after"] == b"5"
            assert b"busy" in refused.body
        assert [(e["door"], e["reason"]) for e in logs if e["event"] == "call.refused"] == [
            ("browser.voice", "capacity"),
            ("browser.stream", "capacity"),
            ("realtime", "capacity"),
        ]
        assert h.rows("select count(*) from session_token_uses") == [(0,)]
    with trio.fail_after(10):  # the held call ends: there is room again
        while (await ready(h))[0] != 200:
            await trio.sleep(0.05)
    async with trio_websocket.open_websocket_url(
        f"{h.ws_url}/v1/voice?token={session['token']}"
    ) as ws:
        assert json.loads(await ws.get_message())["event"] == "session"


async def test_local_first_calls_are_refused_at_the_local_limit(h: Harness) -> None:
    set_capacity(h, calls=10, local_calls=1)
    session = await h.new_session(test_mode=True)  # test mode: the local provider first
    async with realtime_call(h):  # the example agent is local-first: the one local slot
        refused = await refused_status(f"{h.ws_url}/v1/voice?token={session['token']}")
        assert refused.status_code == 503
    assert 'reason="local_capacity"} 1.0' in await metrics_text(h)


async def test_a_draining_server_refuses_the_twilio_webhook(h: Harness, store: Store) -> None:
    await busy_agent(store, "message")
    h.rt.draining = True
    with structlog.testing.capture_logs() as logs:
        busy = await webhook(h)
    assert [e.tag for e in busy] == ["Say", "Hangup"]
    assert h.rows("select count(*) from voice_sessions") == [(0,)]
    assert [(e["door"], e["reason"]) for e in logs if e["event"] == "call.refused"] == [
        ("twilio.incoming", "draining")
    ]
    assert await ready(h) == (503, {"status": "draining"})


async def test_a_stream_whose_webhook_was_answered_before_the_drain_is_admitted(
    h: Harness, store: Store
) -> None:
    """Drain covers the webhook (a new call is refused) but not a stream already promised:
    its caller heard the call connect, so it is admitted and runs while the server drains."""
    await busy_agent(store, "message")
    parameters = stream_parameters(await webhook(h))
    h.rt.draining = True
    assert [e.tag for e in await webhook(h)] == ["Say", "Hangup"]  # a new call: refused

    encoder = wire.InboundEncoder("MZ" + "1" * 32, "CA" + "0" * 32, "AC" + "2" * 32)
    async with trio_websocket.open_websocket_url(h.ws_url + "/twilio/stream") as ws:
        await ws.send_message(encoder.connected())
        await ws.send_message(encoder.start(parameters))
        with trio.fail_after(20):
            while not isinstance(wire.parse_outbound(await ws.get_message()), wire.OutboundMedia):
                pass  # the greeting: the call runs
        assert 'switchboard_calls_in_progress{door="twilio.stream"} 1.0' in await metrics_text(h)
        await ws.send_message(encoder.stop())


async def test_ready_is_503_while_postgresql_does_not_answer(h: Harness) -> None:
    """Issue 11: with PostgreSQL stopped /ready stayed 200 and the balancer kept sending
    calls that could not start. A closed port stands in for the stopped database."""
    assert await ready(h) == (200, {"status": "ready"})
    working = h.rt.store
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = Database(f"postgresql://nobody@127.0.0.1:{port}/none", timeout_s=1.0)
    try:
        h.rt.store = Store(unreachable)
        assert await ready(h) == (503, {"status": "database unreachable"})
    finally:
        h.rt.store = working
        unreachable.close()
    assert await ready(h) == (200, {"status": "ready"})


async def test_drain_waits_for_the_streams_the_server_still_expects(
    autojump_clock: trio.abc.Clock,
) -> None:
    admission = Admission(CallTable.in_memory(), 0, ServerMetrics(), clock=trio.current_time)
    admission.open(max_calls=5, max_local_calls=5)
    runtime: Any = SimpleNamespace(
        draining=False, active_calls=0, admission=admission, settings=Settings()
    )
    key = bytes(16)
    assert admission.reserve_stream("twilio.incoming", key, local=False, ttl_s=60) is None
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        done: list[bool] = []

        async def draining() -> None:
            done.append(await drain(runtime, timeout_s=120))

        nursery.start_soon(draining)
        await trio.sleep(10)
        assert not done  # the stream is due: the worker stays up for it
        ticket = admission.claim_stream("twilio.stream", key, local=False)
        runtime.active_calls = 1
        await trio.sleep(10)
        assert not done  # the call runs
        ticket.close()
        runtime.active_calls = 0
    assert done == [True] and 20 <= trio.current_time() - t0 < 21

    # A stream that never comes holds the drain until its reservation expires (65 s).
    assert admission.reserve_stream("twilio.incoming", key, local=False, ttl_s=60) is None
    t1 = trio.current_time()
    assert await drain(runtime, timeout_s=120) is True
    assert 64.9 <= trio.current_time() - t1 <= 65.2


async def test_a_drain_with_a_grace_period_is_unready_first_and_refuses_only_after_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    """DRAIN_GRACE_S: a balancer sees /ready fail while calls are still admitted, so it
    moves new calls elsewhere before this server refuses one; then the drain proper."""
    admission = Admission(CallTable.in_memory(), 0, ServerMetrics(), clock=trio.current_time)
    admission.open(max_calls=5, max_local_calls=5)
    settings = replace(Settings(), drain_grace_s=8.0, drain_timeout_s=30.0)
    runtime = Runtime.__new__(Runtime)  # only what drain reads: settings and admission
    runtime.settings, runtime.admission, runtime.active_calls = settings, admission, 0
    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain, runtime)
        await trio.sleep(1)
        assert admission.not_ready() == "draining"  # out of the balancer at once
        ticket = admission.start_call("realtime", local=False)
        assert isinstance(ticket, Ticket)  # but a call that still comes is taken
        runtime.active_calls = 1
        await trio.sleep(8)
        refused = admission.start_call("realtime", local=False)
        assert isinstance(refused, Refused) and refused.reason == "draining"
        await trio.sleep(5)
        ticket.close()  # the call taken in the grace period ends: the drain ends
        runtime.active_calls = 0
    assert 14 <= trio.current_time() - t0 < 14.5


def test_drain_settings_come_from_the_environment() -> None:
    settings = Settings.from_env({"DRAIN_TIMEOUT_S": "600", "DRAIN_GRACE_S": "5"})
    assert (settings.drain_timeout_s, settings.drain_grace_s) == (600.0, 5.0)
    assert (Settings.from_env({}).drain_timeout_s, Settings.from_env({}).drain_grace_s) == (
        120.0,
        0.0,
    )
    with pytest.raises(ConfigError, match="DRAIN_GRACE_S"):
        Settings.from_env({"DRAIN_GRACE_S": "soon"})
