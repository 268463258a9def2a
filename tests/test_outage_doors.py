"""PostgreSQL stopped under a running server (the embedded server's own ``pg_ctl``).

A browser call in progress still shows the page its events and completes;
every door answers a new call with a defined refusal (TwiML apology, 503 with
``Retry-After``, close 1011 with a reason), one ``call.refused`` warning per
refusal and no traceback; once PostgreSQL is back the doors take calls again.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import psycopg
import pytest
import structlog
import trio
import trio_websocket
from browser_support import Harness, messages, of, say, start_harness
from psycopg import sql
from psycopg.conninfo import make_conninfo
from twilio.request_validator import RequestValidator

from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.db import Database, migrate
from switchboard.orchestrator.embedded_pg import EmbeddedPostgres, start_embedded
from switchboard.orchestrator.errors import StorageError
from switchboard.orchestrator.server import example_agent_path
from switchboard.orchestrator.store import Store

KNOWN_NUMBER = "+15005550111"  # looked up once while PostgreSQL was up
UNSEEN_NUMBER = "+15005550122"  # never looked up by this process
RATE = 16000


class StoppablePostgres:
    """An embedded PostgreSQL server of this module's own, to stop and start under a test."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server: EmbeddedPostgres = start_embedded(data_dir)
        self.store: Store | None = None  # the harness's, waited for after a restart
        self.uri = self.server.uri

    def stop(self) -> None:
        self.server.stop()  # pg_ctl stop, fast mode: every connection is cut

    def start(self) -> None:
        self.server = start_embedded(self.data_dir)  # the same socket, the same URI
        if self.store is not None:  # the pool reconnects on its next request: wait for it
            deadline = time.monotonic() + 30
            while True:
                try:
                    self.store.ping()
                    break
                except StorageError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    @contextmanager
    def stopped(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()


@pytest.fixture(scope="module")
def own_pg() -> Iterator[StoppablePostgres]:
    data_dir = Path(tempfile.mkdtemp(prefix="switchboard-outage-pg-"))
    pg = StoppablePostgres(data_dir)
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def outage_url(own_pg: StoppablePostgres) -> Iterator[str]:
    name = f"test_{secrets.token_hex(6)}"
    with psycopg.connect(own_pg.uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(own_pg.uri, dbname=name)
    migrate(url)
    yield url
    with psycopg.connect(own_pg.uri, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
async def h(
    outage_url: str,
    own_pg: StoppablePostgres,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    with Database(outage_url, timeout_s=2.0) as db:
        store = own_pg.store = Store(db)
        agent = replace(
            load_agent_file(example_agent_path()),
            name="outage-transfer",
            phone_numbers=(KNOWN_NUMBER,),
            when_busy="transfer",
        )
        await trio.to_thread.run_sync(store.apply_agent, agent)
        yield await start_harness(nursery, store, outage_url, tmp_path, monkeypatch)


@contextmanager
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[list[dict[str, Any]]]:
    """The structlog events logged inside the block; fails if any of them, or any
    standard-library record (hypercorn's "Error in ASGI Framework"), carries a traceback
    or is an error."""
    with caplog.at_level(logging.WARNING), structlog.testing.capture_logs() as logs:
        yield logs
    assert not [e for e in logs if e.get("exc_info") or e["log_level"] in ("error", "critical")]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def refusals(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["door"], e["reason"]) for e in logs if e["event"] == "call.refused"]


async def webhook(h: Harness, to: str) -> ET.Element:
    """Twilio's signed voice webhook for a call to ``to``; the TwiML answer (200 or fails)."""
    url = h.rt.settings.base_url + "/twilio/incoming"
    params = {"CallSid": "CA" + secrets.token_hex(16), "From": "+15005550001", "To": to}
    signature = RequestValidator("test-auth-token").compute_signature(url, params)
    async with httpx.AsyncClient() as client:
        response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return ET.fromstring(response.text)


def verbs(twiml: ET.Element) -> list[tuple[str, str | None]]:
    return [(e.tag, e.text) for e in twiml]


async def refused_handshake(url: str, **kw: Any) -> trio_websocket.ConnectionRejected:
    with pytest.raises(trio_websocket.ConnectionRejected) as caught:
        async with trio_websocket.open_websocket_url(url, **kw):
            pass
    return caught.value


async def test_a_browser_call_shows_its_events_and_completes_while_postgresql_is_stopped(
    h: Harness, own_pg: StoppablePostgres
) -> None:
    """Issue 11: the page's transcript was read back from PostgreSQL, so with the database
    stopped the page saw nothing more (and before that the call died)."""
    session = await h.new_session(test_mode=True)
    url = f"{h.ws_url}/v1/voice?sample_rate={RATE}"
    async with trio_websocket.open_websocket_url(
        url, subprotocols=["switchboard.v1", session["token"]]
    ) as ws:
        greeting = await messages(
            ws, lambda m: of(m, "transcript", role="agent") and of(m, "audio_end"), 30
        )
        assert "Bright Smile Dental" in of(greeting, "transcript", role="agent")[0]["text"]
        with own_pg.stopped():
            await say(ws, "what are your opening hours", RATE)
            seen = await messages(
                ws, lambda m: of(m, "tool_end") and of(m, "transcript", role="agent"), 30
            )
            assert of(seen, "transcript", role="caller")
            assert of(seen, "tool_start", name="lookup_hours") and of(seen, "tool_end", ok=True)
            assert "Monday to Friday" in of(seen, "transcript", role="agent")[0]["text"]
            await say(ws, "thank you goodbye", RATE)
            rest: list[dict[str, Any]] = []
            with trio.fail_after(30), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                while True:
                    rest.append(json.loads(await ws.get_message()))
            assert closed.value.reason.code == 1000  # the agent hung up after its goodbye
            assert any("Goodbye" in m["text"] for m in of(rest, "transcript", role="agent"))
            with trio.fail_after(60):  # the call winds down (its events kept for later)
                while h.rt.active_calls:
                    await trio.sleep(0.05)


async def test_the_twilio_webhook_answers_an_apology_while_postgresql_is_stopped(
    h: Harness, own_pg: StoppablePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: the webhook answered an HTML 500 (Twilio then plays its own error)."""
    assert stream_parameters_of(await webhook(h, KNOWN_NUMBER))  # looked up while up
    with own_pg.stopped(), no_tracebacks(caplog) as logs:
        # An apology, then the agent's when_busy (transfer), from the recent lookup ...
        assert verbs(await webhook(h, KNOWN_NUMBER)) == [
            (
                "Say",
                "Sorry, we cannot take your call right now because of a technical problem."
                " Let me put you through to someone who can help.",
            ),
            ("Dial", "+15005550009"),
        ]
        # ... or, for a number this process never looked up, an apology and a hang-up.
        assert verbs(await webhook(h, UNSEEN_NUMBER)) == [
            (
                "Say",
                "Sorry, we cannot take your call right now because of a technical problem."
                " Please call again in a few minutes.",
            ),
            ("Hangup", None),
        ]
    assert refusals(logs) == [("twilio.incoming", "database_unavailable")] * 2
    async with httpx.AsyncClient() as client:
        text = (await client.get(h.url + "/metrics")).text
    assert (
        'switchboard_calls_refused_total{door="twilio.incoming",reason="database_unavailable"} 2.0'
        in text
    )
    # PostgreSQL is back: the webhook connects calls again, with no restart.
    assert stream_parameters_of(await webhook(h, KNOWN_NUMBER))


async def test_http_routes_answer_503_with_retry_after_while_postgresql_is_stopped(
    h: Harness, own_pg: StoppablePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: POST /v1/sessions answered an HTML 500."""
    session = await h.new_session(test_mode=True)
    auth = {"Authorization": f"Bearer {h.api_key}"}
    with own_pg.stopped(), no_tracebacks(caplog) as logs:
        async with httpx.AsyncClient(base_url=h.url, headers=auth) as client:
            sessions = await client.post("/v1/sessions", json={"agent_id": str(h.agent_id)})
            events = await client.get(f"/v1/calls/{session['session_id']}/events")
            ready = await client.get("/ready")
    for answer in (sessions, events):
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "10"
        assert answer.json() == {"error": "the call database is unavailable; try again shortly"}
    assert (ready.status_code, ready.json()) == (503, {"status": "database unreachable"})
    assert refusals(logs) == [("sessions", "database_unavailable")]
    with trio.fail_after(30):  # back: the pool reconnects on its own, within a second or so
        while (await h.post_session({"agent_id": str(h.agent_id)})).status_code != 201:
            await trio.sleep(0.2)


async def test_call_websockets_are_refused_before_the_upgrade_while_postgresql_is_stopped(
    h: Harness, own_pg: StoppablePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """The browser and /v1/realtime doors: 503 with Retry-After before the upgrade (before:
    a 503 without Retry-After after a logged traceback, or a 500)."""
    session = await h.new_session(test_mode=True)
    api_key = [(b"authorization", f"Bearer {h.api_key}".encode())]
    token = [(b"authorization", f"Bearer {session['token']}".encode())]
    with own_pg.stopped(), no_tracebacks(caplog) as logs:
        browser = await refused_handshake(f"{h.ws_url}/v1/voice?token={session['token']}")
        realtime = await refused_handshake(
            f"{h.ws_url}/v1/realtime?agent_id={h.agent_id}", extra_headers=api_key
        )
        realtime_token = await refused_handshake(f"{h.ws_url}/v1/realtime", extra_headers=token)
    for refused in (browser, realtime, realtime_token):
        assert refused.status_code == 503
        assert dict(refused.headers)[b"retry-after"] == b"10"
        assert json.loads(refused.body) == {
            "error": "the call database is unavailable; try again shortly"
        }
    assert refusals(logs) == [
        ("browser.voice", "database_unavailable"),
        ("realtime", "database_unavailable"),
        ("realtime", "database_unavailable"),
    ]
    # PostgreSQL is back: the token that could not be checked is still good.
    async with trio_websocket.open_websocket_url(
        f"{h.ws_url}/v1/voice?token={session['token']}"
    ) as ws:
        assert json.loads(await ws.get_message())["event"] == "session"


async def test_a_stream_promised_before_the_outage_closes_1011_with_a_reason(
    h: Harness, own_pg: StoppablePostgres, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 11: a stream whose webhook was answered before PostgreSQL stopped closed 1011
    with a traceback and no reason."""
    parameters = stream_parameters_of(await webhook(h, KNOWN_NUMBER))
    encoder = wire.InboundEncoder("MZ" + "1" * 32, "CA" + "0" * 32, "AC" + "2" * 32)
    with own_pg.stopped(), no_tracebacks(caplog) as logs:
        async with trio_websocket.open_websocket_url(h.ws_url + "/twilio/stream") as ws:
            await ws.send_message(encoder.connected())
            await ws.send_message(encoder.start(parameters))
            with trio.fail_after(10), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await ws.get_message()
    assert closed.value.reason.code == 1011
    assert closed.value.reason.reason == "the call database is unavailable; try again shortly"
    assert refusals(logs) == [("twilio.stream", "database_unavailable")]
    async with httpx.AsyncClient() as client:  # its room is given back, not held 65 s
        assert "switchboard_calls_reserved 0.0" in (await client.get(h.url + "/metrics")).text


def stream_parameters_of(twiml: ET.Element) -> dict[str, str]:
    stream = twiml.find("./Connect/Stream")
    assert stream is not None, ET.tostring(twiml)
    return {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}


class GoneAfterTheKey:
    """The harness's store, but PostgreSQL stops answering once the API key is looked up:
    the agent lookup fails as it does for an agent that does not exist (StorageError)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def tenant_for_api_key(self, key: str) -> Any:
        return self._store.tenant_for_api_key(key)

    def get_agent(self, *args: Any) -> Any:
        raise StorageError("cannot connect to PostgreSQL: connection refused")

    def ping(self) -> None:
        raise StorageError("cannot connect to PostgreSQL: connection refused")


async def test_an_agent_lookup_cut_by_the_outage_is_503_not_no_such_agent(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """The store says "no such agent" and "no database" with the same StorageError; a
    lookup cut by an outage was answered 404 (sessions) or 403 (/v1/realtime)."""
    working = h.rt.store
    h.rt.store = GoneAfterTheKey(working)  # type: ignore[assignment]
    try:
        with no_tracebacks(caplog) as logs:
            session = await h.post_session({"agent_id": str(h.agent_id)})
            realtime = await refused_handshake(
                f"{h.ws_url}/v1/realtime?agent_id={h.agent_id}",
                extra_headers=[(b"authorization", f"Bearer {h.api_key}".encode())],
            )
    finally:
        h.rt.store = working
    assert session.status_code == 503 and session.headers["retry-after"] == "10"
    assert realtime.status_code == 503
    assert refusals(logs) == [
        ("sessions", "database_unavailable"),
        ("realtime", "database_unavailable"),
    ]
    unknown = await h.post_session({"agent_id": str(uuid4())})  # the database answers
    assert unknown.status_code == 404
