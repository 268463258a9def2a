"""Real calls through the real server, recorded, as traces to replay.

:func:`served` runs one Switchboard server (``orchestrator.server.serve``:
hypercorn, real WebSockets, a fresh database of the session's embedded
PostgreSQL, recordings on) and one fake OpenAI Realtime server
(:class:`~switchboard.testing.fake_openai_realtime.FakeOpenAIRealtime` on its
own loopback port) in a thread of its own, for a whole test module: the tests
of the module run their calls against it one after another, each from its own
Trio run, over loopback. :meth:`Served.use` gives the next call's fake its
script (a fresh fake, so its connection numbers start at 1 again).

The agent (:data:`AGENT_YAML`) is the example receptionist on
``openai-realtime`` falling back to ``local``, recorded without a consent line.
:meth:`Served.trace` waits for a call's recording and exports its trace as
``switchboard trace export`` does.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import trio
import trio_websocket

from switchboard.actors.providers import Endpoints
from switchboard.orchestrator import devcreds
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.recording import open_recordings
from switchboard.orchestrator.recording_rows import get_recording
from switchboard.orchestrator.replay.engine import replay_trace
from switchboard.orchestrator.server import serve
from switchboard.orchestrator.store import Store
from switchboard.orchestrator.trace_export import export_trace
from switchboard.orchestrator.trace_file import Trace, read_trace
from switchboard.testing import Script
from switchboard.testing import serve as serve_fake
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime

NUMBER = "+15005550123"
TRANSFER = "+15005550009"
AGENT_YAML = f"""
name: replayed-receptionist
tenant: demo
greeting: Thanks for calling Bright Smile Dental.
instructions: You are the receptionist of a dental clinic.
mode: openai-realtime
fallback: [local]
phone_numbers: ["{NUMBER}"]
transfer_number: "{TRANSFER}"
idle_timeout_seconds: 30
hours: {{monday: "08:00-18:00", tuesday: "08:00-18:00"}}
failover: {{stall_timeout_ms: 1500, audio_gap_timeout_ms: 1000, cooldown_seconds: 0}}
intents:
  - name: hours
    phrases: [what are your opening hours, when are you open]
    tool: lookup_hours
    reply: "We are open {{result}}."
  - name: goodbye
    phrases: [thank you goodbye, goodbye]
    tool: hangup_call
    reply: Thank you for calling. Goodbye!
no_match_reply: Sorry, I did not catch that.
tools:
  - name: lookup_hours
    description: Look up the opening hours.
    parameters: {{type: object, properties: {{}}}}
  - name: transfer_to_human
    description: Put the caller through to a person.
    parameters: {{type: object, properties: {{reason: {{type: string}}}}}}
  - name: hangup_call
    description: End the call.
    parameters: {{type: object, properties: {{}}}}
recording: {{enabled: true, announce: never}}
"""
AGENT = parse_agent_yaml(AGENT_YAML)
AUTH_TOKEN = "test-auth-token"
RECORDING_WAIT_S = 60.0


@dataclass
class Served:
    """The module's server: where it listens, its data, and the fake behind it."""

    url: str
    settings: Settings
    store: Store
    api_key: str
    agent_id: UUID
    tenant_id: UUID
    _fakes: dict[str, FakeOpenAIRealtime] = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    @property
    def fake(self) -> FakeOpenAIRealtime:
        """The fake of the current call (set by :meth:`use`)."""
        return self._fakes["current"]

    def use(self, script: Script) -> FakeOpenAIRealtime:
        """The fake the next call's ``openai-realtime`` reaches: a new one playing ``script``."""
        fake = FakeOpenAIRealtime(script)
        self._fakes["current"] = fake
        return fake

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.settings.database_url) as conn:
            return conn.execute(sql, args).fetchall()

    async def trace(self, session_id: UUID) -> Trace:
        """The call's trace with its tape, once its recording is complete and its last
        event written (waits for both: the recorder and the event logger finish the call
        in either order, and on a busy machine far apart)."""
        with trio.fail_after(RECORDING_WAIT_S):
            while True:
                row = await trio.to_thread.run_sync(
                    get_recording, self.store, self.tenant_id, session_id
                )
                ended = self.rows(
                    "select 1 from call_events where session_id = %s and type = 'session.end'",
                    session_id,
                )
                if row is not None and row.status == "complete" and ended:
                    break
                await trio.sleep(0.05)
        recordings = open_recordings(self.settings)
        return await trio.to_thread.run_sync(
            export_trace, self.store, recordings.store, recordings.keyring, session_id
        )

    def session_of(self, transport: str, call_sid: str | None = None) -> UUID:
        """The newest session that came through door ``transport`` (with ``call_sid``)."""
        rows = self.rows(
            "select id from voice_sessions where transport = %s"
            " and (%s::text is null or call_sid = %s) order by created_at desc limit 1",
            transport,
            call_sid,
            call_sid,
        )
        assert rows, f"no {transport} session"
        return UUID(str(rows[0][0]))

    async def browser_session(self) -> dict[str, Any]:
        """A browser session for the agent (``POST /v1/sessions``): token and session id."""
        async with httpx.AsyncClient() as client:
            response = await client.post(
                self.url + "/v1/sessions",
                json={"agent_id": str(self.agent_id)},
                headers={"Authorization": f"Bearer {self.api_key}"},
            )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result


@contextmanager
def served(database_url: str, data_dir: Path) -> Iterator[Served]:
    """Run the server and the fake in a thread until the block ends (see the module
    docstring)."""
    fakes: dict[str, FakeOpenAIRealtime] = {"current": FakeOpenAIRealtime(Script())}
    ready: queue.Queue[tuple[str, trio.lowlevel.TrioToken] | BaseException] = queue.Queue()
    stopper: dict[str, Callable[[], None]] = {}

    async def route(request: trio_websocket.WebSocketRequest) -> None:
        await fakes["current"].handler(request)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_fake, route)
            settings = Settings(
                host="127.0.0.1",
                port=0,
                data_dir=data_dir,
                database_url=database_url,
                twilio_auth_token=AUTH_TOKEN,
                log_format="console",
                endpoints=Endpoints(
                    openai_realtime_url=f"ws://127.0.0.1:{port}/v1/realtime",
                    openai_api_key="sk-test",
                ),
            )
            urls = await nursery.start(serve, settings)
            stopper["stop"] = nursery.cancel_scope.cancel
            ready.put((urls[0], trio.lowlevel.current_trio_token()))

    def run() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # reported to the fixture, which raises it
            ready.put(exc)

    thread = threading.Thread(target=run, name="replay-server", daemon=True)
    thread.start()
    started = ready.get(timeout=120)
    if isinstance(started, BaseException):
        raise RuntimeError("the server did not start") from started
    url, token = started
    settings = Settings(
        host="127.0.0.1", port=0, data_dir=data_dir, database_url=database_url, log_format="console"
    )
    creds = devcreds.load(data_dir)
    assert creds is not None
    try:
        with Database(database_url) as db:
            store = Store(db)
            agent_id = store.apply_agent(AGENT)
            tenant_id = store.ensure_tenant(AGENT.tenant)
            srv = Served(url, settings, store, creds.api_key, agent_id, tenant_id, fakes)
            yield srv
    finally:
        trio.from_thread.run_sync(stopper["stop"], trio_token=token)
        thread.join(timeout=30)


def replay_twice(path: str) -> tuple[str, str, tuple[float, float]]:
    """Replay the trace file at ``path`` twice, in this process (a worker's: Trio's
    scheduler is made deterministic for a replay process-wide, so no other Trio run may
    share it); both replays' events as JSON and each one's wall time (s)."""
    out: list[str] = []
    walls: list[float] = []
    trace = read_trace(Path(path))
    for _ in range(2):
        began = time.perf_counter()
        replay = replay_trace(trace)
        walls.append(time.perf_counter() - began)
        out.append(json.dumps(replay.events, sort_keys=True))
    return out[0], out[1], (walls[0], walls[1])


def media(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def jsons(message: str | bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(message)
    return data
