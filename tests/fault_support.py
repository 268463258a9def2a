"""The fault suite's parts: a real server process, held calls on each door, and the counts.

:class:`ServerProcess` runs ``python -m switchboard.orchestrator.cli serve --workers 1``
as a user does, on a data folder and a database that outlive it: it can be SIGKILLed,
SIGTERMed and started again on the same folder and database, and its output (stdout and
the JSON log on stderr, every run) is kept in one file.

The callers hold their calls open in real time until the test hangs up:

* :func:`twilio_call`: the signed voice webhook, then ``connected``, ``start``, a
  20 ms frame every 20 ms (silence, or a line the test gives), and every ``mark``
  echoed once its audio has played (``switchboard call``'s :class:`~.caller.Phone`);
* :func:`browser_call`: ``POST /v1/sessions``, then ``/v1/voice`` with 20 ms of
  silence every 20 ms;
* :func:`realtime_call`: ``/v1/realtime`` with the tenant API key, 100 ms of silence
  every 100 ms.

:func:`session_rows` / :func:`assert_complete` check what PostgreSQL holds of a call:
events numbered 1..N without a gap or a repeat, ``session.end`` last and once, the
session ended, its ``call_logs`` row, a ``call_turns`` row for each turn event.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import json
import os
import signal
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import trio
import trio_websocket
from twilio.request_validator import RequestValidator

from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator import devcreds
from switchboard.orchestrator.caller import Phone, post_webhook, twilio_sid
from switchboard.orchestrator.journal import read_journal

AUTH_TOKEN = "test-auth-token"
DEMO = "+15005550006"
START_TIMEOUT_S = 90.0
"""Bound on a server start (greetings are synthesized first); a bound, not a measure."""


@dataclass
class ServerProcess:
    """``serve --workers 1`` in a child process; :meth:`start` again after it stopped."""

    data_dir: Path
    database_url: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    port: int = 0
    """0: any free port, a new one at each start."""
    process: trio.Process | None = None
    url: str = ""
    api_key: str = ""
    agent_id: str = ""

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    def journals(self) -> list[Path]:
        """The call journals in the spool folder (not the temporary ``.*.new`` files)."""
        return sorted(self.spool_dir.glob("*.jsonl")) if self.spool_dir.is_dir() else []

    async def start(self) -> None:
        """Start the server; return once it listens (its URL in :attr:`url`)."""
        env = dict(
            os.environ,
            DATABASE_URL=self.database_url,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            LOG_FORMAT="json",
            SPEECH_WORKERS="1",
            **self.env,
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        command = [sys.executable, "-m", "switchboard.orchestrator.cli", "serve"]
        command += ["--workers", str(self.workers), "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir)]
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = await trio.lowlevel.open_process(
                command, stdout=log, stderr=log, env=env, start_new_session=True
            )
        marker = "Switchboard is listening on "
        with trio.fail_after(START_TIMEOUT_S):
            while True:
                with self.log_path.open("rb") as log:
                    log.seek(offset)
                    text = log.read().decode(errors="replace")
                if marker in text and text.split(marker, 1)[1].count("\n"):
                    break
                if self.process.poll() is not None:
                    raise AssertionError(f"the server exited at start:\n{text[-4000:]}")
                await trio.sleep(0.1)
        self.url = text.split(marker, 1)[1].split(" ", 1)[0]
        creds = devcreds.load(self.data_dir)
        assert creds is not None
        self.api_key = creds.api_key
        (self.agent_id,) = self.rows("select id::text from agents where name = 'receptionist'")[0]

    def kill(self) -> None:
        """SIGKILL: the process dies at once, its calls with it."""
        assert self.process is not None
        self.process.kill()

    def kill_all(self) -> None:
        """SIGKILL to the server and every process under it at once (its container or
        machine lost; the workers run in sessions of their own, so not by group)."""
        assert self.process is not None
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM: the server drains (no new calls), then exits."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    async def wait(self, timeout_s: float = 60.0) -> int:
        """The exit status once the process has exited (fails after ``timeout_s``)."""
        assert self.process is not None
        with trio.fail_after(timeout_s):
            return await self.process.wait()

    async def stop(self) -> None:
        """Stop it if it runs (SIGTERM twice: at once; SIGKILL if that hangs)."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        with trio.CancelScope(shield=True):
            process.send_signal(signal.SIGTERM)
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(30):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            return conn.execute(sql, args).fetchall()

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def assert_no_traceback(self) -> None:
        """No run of the server logged a traceback (a crash is a recorded error, not this)."""
        text = self.log_text()
        assert "Traceback" not in text and "Error in ASGI" not in text, text[-6000:]

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(self.url + path)

    async def ready_when(self, status_code: int, timeout_s: float = 30.0) -> httpx.Response:
        """``GET /ready`` until it answers ``status_code``; that answer."""

        async def check() -> httpx.Response | None:
            response = await self.get("/ready")
            return response if response.status_code == status_code else None

        answer: httpx.Response = await poll(check, f"/ready {status_code}", timeout_s, 0.1)
        return answer

    async def webhook(self) -> httpx.Response:
        """A signed ``POST /twilio/incoming`` for a new call to the demo number."""
        url = self.url + "/twilio/incoming"
        params = {"CallSid": twilio_sid("CA"), "From": "+15005550001", "To": DEMO}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, data=params, headers={"X-Twilio-Signature": signature})

    async def new_session(self) -> httpx.Response:
        """``POST /v1/sessions`` for the demo agent (a browser call's token)."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(
                self.url + "/v1/sessions", json={"agent_id": "receptionist"}, headers=headers
            )


def descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (children, theirs, ...), from ``/proc``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@asynccontextmanager
async def server_process(
    tmp_path: Path, database_url: str, **env: str
) -> AsyncIterator[ServerProcess]:
    """A started :class:`ServerProcess` on ``tmp_path / "data"``, stopped at the end."""
    server = ServerProcess(tmp_path / "data", database_url, tmp_path / "server.log", env)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()


async def poll(
    check: Callable[[], Any], what: str, timeout_s: float = 60.0, every_s: float = 0.2
) -> Any:
    """``check()`` (awaited if it is a coroutine function) until it returns something
    true (returned); AssertionError naming ``what`` after ``timeout_s``. Exceptions from
    ``check`` (a database not back yet) count as not yet."""
    last: Any = None
    with trio.move_on_after(timeout_s):
        while True:
            try:
                last = check()
                if inspect.isawaitable(last):
                    last = await last
            except (psycopg.Error, httpx.HTTPError) as exc:
                last = exc
            else:
                if last:
                    return last
            await trio.sleep(every_s)
    raise AssertionError(f"not within {timeout_s} s: {what} (last: {last!r})")


# -- the callers -----------------------------------------------------------------


@dataclass
class TwilioCall:
    """A Media Streams call held open; ``phone`` has what the caller heard."""

    session_id: str
    phone: Phone
    ws: trio_websocket.WebSocketConnection
    encoder: wire.InboundEncoder
    webhook_headers: httpx.Headers
    """The webhook answer's headers (a balancer in front may name the instance)."""

    @property
    def stream_headers(self) -> dict[str, str]:
        """The stream's WebSocket handshake answer's headers, names in lower case."""
        return {k.decode().lower(): v.decode() for k, v in self.ws.handshake_headers}

    @property
    def frames_heard(self) -> int:
        return len(self.phone.media_times)

    async def wait_greeting(self, timeout_s: float = 30.0) -> None:
        """Until the greeting has played (its closing mark echoed)."""
        assert await self.phone.wait_response(0.0, timeout_s) is not None, "no greeting"

    async def ask(
        self, audio: bytes, timeout_s: float = 30.0, *, whole: bool = True
    ) -> float | None:
        """Say ``audio`` (G.711 mu-law) and wait for the answer to play (``whole``) or to
        begin; when it began (trio time), None if no answer came."""
        spoke = await self.phone.speak(audio)
        if whole:
            return await self.phone.wait_response(spoke, timeout_s)
        times = self.phone.media_times
        if not await self.phone.wait_for(lambda: any(t >= spoke for t in times), timeout_s):
            return None
        return next(t for t in times if t >= spoke)

    async def hang_up(self) -> None:
        """``stop`` and close, as Twilio does when the caller hangs up."""
        if not self.phone.closed.is_set():
            await self.phone._send(self.encoder.stop())
        await self.ws.aclose()


@asynccontextmanager
async def twilio_call(server: ServerProcess) -> AsyncIterator[TwilioCall]:
    """A call to the demo number, as Twilio places it, in real time until the block ends
    (the caller then hangs up, unless the test did or the server closed the stream)."""
    call_sid, account_sid = twilio_sid("CA"), twilio_sid("AC")
    params = {"CallSid": call_sid, "AccountSid": account_sid, "From": "+15005550001", "To": DEMO}
    answers: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        answers.append(response)

    async with httpx.AsyncClient(timeout=10, event_hooks={"response": [keep]}) as client:
        stream_url, parameters = await post_webhook(client, server.url, AUTH_TOKEN, params)
    encoder = wire.InboundEncoder(twilio_sid("MZ"), call_sid, account_sid)
    async with (
        trio_websocket.open_websocket_url(stream_url) as ws,
        trio.open_nursery() as nursery,
    ):
        phone = Phone(ws, encoder, realtime=True)
        nursery.start_soon(phone.listen, nursery)
        await ws.send_message(encoder.connected())
        await ws.send_message(encoder.start(parameters))
        nursery.start_soon(phone.microphone)
        call = TwilioCall(parameters["session_id"], phone, ws, encoder, answers[-1].headers)
        try:
            yield call
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await call.hang_up()
            nursery.cancel_scope.cancel()


@dataclass
class SocketCall:
    """A browser or realtime call held open: every JSON message received, in order."""

    session_id: str
    ws: trio_websocket.WebSocketConnection
    received: list[dict[str, Any]] = field(default_factory=list)
    closed: trio.Event = field(default_factory=trio.Event)
    _changed: trio.Event = field(default_factory=trio.Event)

    async def receive(self) -> None:
        try:
            while True:
                self.received.append(json.loads(await self.ws.get_message()))
                self._changed.set()
                self._changed = trio.Event()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._changed.set()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """The first message received (so far or later) for which ``predicate`` holds."""
        with trio.fail_after(timeout_s):
            while True:
                for message in self.received:
                    if predicate(message):
                        return message
                assert not self.closed.is_set(), f"closed: {self.ws.closed} {self.received[-5:]}"
                await self._changed.wait()

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps(message))

    async def hang_up(self) -> None:
        await self.ws.aclose()


async def _silence(
    call: SocketCall, message: dict[str, Any], every_s: float, until: trio.Event
) -> None:
    next_s = trio.current_time()
    while not until.is_set():
        try:
            await call.send(message)
        except trio_websocket.ConnectionClosed:
            return
        next_s += every_s
        await trio.sleep_until(next_s)


@asynccontextmanager
async def browser_call(server: ServerProcess, rate: int = 16000) -> AsyncIterator[SocketCall]:
    """A practice-page call (``/v1/voice`` at ``rate`` Hz) sending silence in real time."""
    made = await server.new_session()
    assert made.status_code == 201, made.text
    url = f"{server.ws_url}/v1/voice?sample_rate={rate}"
    token = made.json()["token"]
    async with trio_websocket.open_websocket_url(url, subprotocols=["switchboard.v1", token]) as ws:
        call = SocketCall(made.json()["session_id"], ws)
        frame = {"event": "audio", "payload": base64.b64encode(bytes(rate // 50 * 2)).decode()}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call.receive)
            nursery.start_soon(_silence, call, frame, 0.02, call.closed)
            try:
                yield call
            finally:
                nursery.cancel_scope.cancel()


@asynccontextmanager
async def realtime_call(server: ServerProcess) -> AsyncIterator[SocketCall]:
    """An OpenAI-Realtime-style call (``/v1/realtime``) sending silence in real time."""
    url = f"{server.ws_url}/v1/realtime?agent_id={server.agent_id}"
    headers = [(b"authorization", f"Bearer {server.api_key}".encode())]
    async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:
        created = json.loads(await ws.get_message())
        assert created["type"] == "session.created", created
        session_id = str(UUID(created["session"]["id"].removeprefix("sess_")))
        call = SocketCall(session_id, ws, [created])
        silence = base64.b64encode(bytes(24000 // 10 * 2)).decode()
        frame = {"type": "input_audio_buffer.append", "audio": silence}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call.receive)
            nursery.start_soon(_silence, call, frame, 0.1, call.closed)
            try:
                yield call
            finally:
                nursery.cancel_scope.cancel()


def twiml_verbs(response: httpx.Response) -> list[str]:
    """The verbs of a TwiML answer (``Connect``, ``Say``, ``Hangup``...)."""
    return [element.tag for element in ET.fromstring(response.text)]


# -- the counts ------------------------------------------------------------------


def journal_events(path: Path) -> list[tuple[int, str]]:
    """``(seq, type)`` of every event in a call journal, in file order."""
    contents = read_journal(path)
    return [(e.seq, e.type) for rows in contents.events.values() for e in rows]


def session_rows(server: ServerProcess, session_id: str) -> list[tuple[int, str]]:
    """``(seq, type)`` of the session's events in PostgreSQL, in ``seq`` order."""
    return [
        (int(seq), str(type_))
        for seq, type_ in server.rows(
            "select seq, type from call_events where session_id = %s order by seq", session_id
        )
    ]


def call_log(server: ServerProcess, session_id: str) -> str | None:
    """The session's ``call_logs.end_reason`` once the session is ended, else None."""
    found = server.rows(
        "select l.end_reason from voice_sessions s join call_logs l on l.session_id = s.id"
        " where s.id = %s and s.status = 'ended'",
        session_id,
    )
    return str(found[0][0]) if found else None


def assert_complete(server: ServerProcess, session_id: str) -> list[tuple[int, str]]:
    """Assert the call is whole in PostgreSQL; return its ``(seq, type)`` rows.

    Whole: events ``1..N`` without a gap (``seq`` is the primary key with the session,
    so no repeat of a number), ``session.start`` first and only there, ``session.end``
    last and only there, the session ``ended`` with its ``call_logs`` row, and a
    ``call_turns`` row for each ``turn:user`` / ``turn:agent`` event.
    """
    rows = session_rows(server, session_id)
    assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1)), rows
    types = [t for _, t in rows]
    assert types[0] == "session.start" and types.count("session.start") == 1, types
    assert types[-1] == "session.end" and types.count("session.end") == 1, types
    assert call_log(server, session_id) is not None, session_id
    turns = [seq for seq, t in rows if t in ("turn:user", "turn:agent")]
    stored = server.rows(
        "select seq from call_turns where session_id = %s order by seq", session_id
    )
    assert [int(s) for (s,) in stored] == turns
    return rows
