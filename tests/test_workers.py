"""``serve --workers 2`` as a user runs it: a parent process and two workers on one port.

Each test starts ``python -m switchboard.orchestrator.cli serve --workers 2
--port 0`` on a fresh database of the session's embedded PostgreSQL. Every
answer names its worker (``X-Switchboard-Worker``, also on WebSocket
handshakes), so a test can put two requests on different workers by opening
connections until two workers have answered.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import trio
import trio_websocket
from twilio.request_validator import RequestValidator

from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator import devcreds

AUTH_TOKEN = "test-auth-token"
DEMO = "+15005550006"
ATTEMPTS = 40  # connections tried to reach a given worker (each lands on one of two)


@dataclass
class Server:
    url: str
    process: trio.Process
    database_url: str
    api_key: str
    agent_id: str
    log_path: Path

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, args).fetchall()

    def log_events(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    async def get(self, path: str) -> httpx.Response:
        """A GET on a new connection (so it may land on either worker)."""
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.get(self.url + path)

    async def per_worker(self, path: str) -> dict[int, httpx.Response]:
        """GET ``path`` until both workers have answered; their answers by worker."""
        answers: dict[int, httpx.Response] = {}
        for _ in range(ATTEMPTS):
            response = await self.get(path)
            answers.setdefault(worker_of(response.headers), response)
            if len(answers) == 2:
                return answers
        raise AssertionError(f"only workers {sorted(answers)} answered {path}")

    async def webhook(self, call_sid: str | None = None) -> httpx.Response:
        url = self.url + "/twilio/incoming"
        call_sid = call_sid or "CA" + os.urandom(16).hex()
        params = {"CallSid": call_sid, "From": "+15005550001", "To": DEMO}
        signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(url, data=params, headers={"X-Twilio-Signature": signature})


def worker_of(headers: Any) -> int:
    if isinstance(headers, tuple):  # a WebSocket handshake's
        headers = {k.decode().lower(): v.decode() for k, v in headers}
    return int(headers["x-switchboard-worker"])


@asynccontextmanager
async def multi_worker_server(
    database_url: str, tmp_path: Path, *flags: str
) -> AsyncIterator[Server]:
    """The server, stopped (and waited for) at the end of the block."""
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        LOG_FORMAT="json",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "switchboard.orchestrator.cli", "serve", "--workers", "2"]
    command += ["--port", "0", "--data-dir", str(tmp_path / "data"), *flags]
    with log_path.open("wb") as log:
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=log, env=env
        )
        try:
            url = await _listening_url(process)
            creds = devcreds.load(tmp_path / "data")
            assert creds is not None
            with psycopg.connect(database_url) as conn:
                row = conn.execute("select id from agents where name = 'receptionist'").fetchone()
            assert row is not None
            yield Server(url, process, database_url, creds.api_key, str(row[0]), log_path)
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    process.send_signal(signal.SIGTERM)  # the second one: stop at once
                    with trio.move_on_after(30):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()


async def _listening_url(process: trio.Process) -> str:
    assert process.stdout is not None
    seen = b""
    with trio.fail_after(90):
        while b"Switchboard is listening on " not in seen or not seen.endswith(b"\n"):
            chunk = await process.stdout.receive_some(4096)
            if not chunk:
                raise AssertionError(f"the server exited: {seen.decode(errors='replace')}")
            seen += chunk
    line = seen.split(b"Switchboard is listening on ", 1)[1].split(b"\n", 1)[0]
    return line.split(b" ", 1)[0].decode()


@asynccontextmanager
async def realtime_call(server: Server) -> AsyncIterator[trio_websocket.WebSocketConnection]:
    """A ``/v1/realtime`` call (tenant API key), held open until the block ends."""
    url = f"{server.ws_url}/v1/realtime?agent_id={server.agent_id}"
    headers = [(b"authorization", f"Bearer {server.api_key}".encode())]
    async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:
        assert json.loads(await ws.get_message())["type"] == "session.created"
        yield ws


async def one_call_per_worker(
    server: Server, stack: AsyncExitStack
) -> tuple[dict[int, trio_websocket.WebSocketConnection], int]:
    """Hold a realtime call on each worker (entered on ``stack``); also how many attempts
    were refused with 503 on the way (a worker that already had its call, when full)."""
    calls: dict[int, trio_websocket.WebSocketConnection] = {}
    refused = 0
    for _ in range(ATTEMPTS):
        try:
            ws = await stack.enter_async_context(realtime_call(server))
        except trio_websocket.ConnectionRejected as exc:
            assert exc.status_code == 503
            refused += 1
            continue
        worker = worker_of(ws.handshake_headers)
        if worker in calls:
            await ws.aclose()  # a second call on this worker: hang up, try again
        else:
            calls[worker] = ws
        if len(calls) == 2:
            return calls, refused
    raise AssertionError(f"calls reached only workers {sorted(calls)}")


def metric(text: str, sample: str) -> float:
    """The value of ``sample`` (name and labels, exactly as exposed) in ``text``."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in {text}")


async def test_a_webhook_and_its_stream_on_different_workers_make_one_call(
    database_url: str, tmp_path: Path
) -> None:
    # Each try that lands on the webhook's worker leaves its reservation until the admission
    # token expires: room for every try, so this test is about routing, not capacity.
    room = ("--max-local-calls-per-worker", str(2 * ATTEMPTS))
    async with multi_worker_server(database_url, tmp_path, *room) as server:
        for _ in range(ATTEMPTS):
            call_sid = "CA" + os.urandom(16).hex()
            answer = await server.webhook(call_sid)
            stream = ET.fromstring(answer.text).find("./Connect/Stream")
            assert stream is not None, answer.text
            parameters = {p.get("name", ""): p.get("value", "") for p in stream}
            async with trio_websocket.open_websocket_url(stream.get("url", "")) as ws:
                if worker_of(ws.handshake_headers) == worker_of(answer.headers):
                    continue  # the same worker: hang up before `start`, try another call
                encoder = wire.InboundEncoder("MZ" + "1" * 32, call_sid, "AC" + "2" * 32)
                await ws.send_message(encoder.connected())
                await ws.send_message(encoder.start(parameters))
                with trio.fail_after(30):
                    while not isinstance(
                        wire.parse_outbound(await ws.get_message()), wire.OutboundMedia
                    ):
                        pass  # the greeting: the other worker admitted the stream
                await ws.send_message(encoder.stop())
            session_id = parameters["session_id"]
            with trio.fail_after(30):
                while server.rows(
                    "select status from voice_sessions where id = %s", session_id
                ) != [("ended",)]:
                    await trio.sleep(0.1)
            types = [
                r[0]
                for r in server.rows(
                    "select type from call_events where session_id = %s order by seq", session_id
                )
            ]
            assert types[0] == "session.start" and types[-1] == "session.end"
            break
        else:
            raise AssertionError("no webhook and stream landed on different workers")

        # A session token minted by one worker is good on the other (one keyring).
        headers = {"Authorization": f"Bearer {server.api_key}"}
        for _ in range(ATTEMPTS):
            async with httpx.AsyncClient() as client:
                made = await client.post(
                    server.url + "/v1/sessions",
                    json={"agent_id": "receptionist", "test_mode": True},
                    headers=headers,
                )
            assert made.status_code == 201, made.text
            url = f"{server.ws_url}/v1/voice?token={made.json()['token']}"
            async with trio_websocket.open_websocket_url(url) as ws:
                if worker_of(ws.handshake_headers) != worker_of(made.headers):
                    assert json.loads(await ws.get_message())["event"] == "session"
                    break
        else:
            raise AssertionError("no session and call landed on different workers")


async def test_metrics_from_any_worker_sum_both_workers(database_url: str, tmp_path: Path) -> None:
    flags = ("--max-calls-per-worker", "1", "--max-local-calls-per-worker", "1")
    async with (
        multi_worker_server(database_url, tmp_path, *flags) as server,
        AsyncExitStack() as stack,
    ):
        calls, refused = await one_call_per_worker(server, stack)
        for ws in calls.values():  # the client's first event starts the call
            await ws.send_message(json.dumps({"type": "session.update", "session": {}}))
        for _ in range(3):  # both workers are full now
            with pytest.raises(trio_websocket.ConnectionRejected) as caught:
                await stack.enter_async_context(realtime_call(server))
            assert caught.value.status_code == 503
        refused += 3
        answers = await server.per_worker("/metrics")
        for response in answers.values():
            text = response.text
            assert metric(text, 'switchboard_calls_in_progress{door="realtime"}') == 2
            assert metric(text, 'switchboard_call_capacity{kind="all"}') == 2
            sample = 'switchboard_calls_refused_total{door="realtime",reason="capacity"}'
            assert metric(text, sample) == refused
        for response in (await server.per_worker("/ready")).values():
            assert (response.status_code, response.json()) == (503, {"status": "full"})
        # The calls' own figures add up over both workers too: one call running on each.
        realtime = '{door="realtime",mode="local"}'
        await metrics_reach(server, f"switchboard_calls_started_total{realtime}", 2)
        await metrics_reach(server, f"switchboard_calls_active{realtime}", 2)
        await stack.aclose()  # both callers hang up
        ended = (
            'switchboard_calls_ended_total{door="realtime",mode="local",reason="caller_hung_up"}'
        )
        await metrics_reach(server, ended, 2)
        await metrics_reach(server, f"switchboard_calls_active{realtime}", 0)


async def metrics_reach(server: Server, sample: str, value: float) -> None:
    """Wait until every worker's ``/metrics`` gives ``sample`` the value ``value``."""
    seen: dict[int, float | None] = {}
    with trio.move_on_after(30):
        while True:
            for worker, response in (await server.per_worker("/metrics")).items():
                found = [
                    float(line.rsplit(" ", 1)[1])
                    for line in response.text.splitlines()
                    if line.startswith(sample + " ")
                ]
                seen[worker] = found[0] if found else None
            if set(seen.values()) == {value}:
                return
            await trio.sleep(0.2)
    raise AssertionError(f"{sample}: {seen}, not {value} on every worker")


async def test_a_killed_worker_is_replaced(database_url: str, tmp_path: Path) -> None:
    async with multi_worker_server(database_url, tmp_path) as server:
        pids = {w: r.json()["pid"] for w, r in (await server.per_worker("/health")).items()}
        os.kill(pids[1], signal.SIGKILL)
        with trio.fail_after(60):
            while True:
                answers = {}
                with contextlib.suppress(AssertionError):  # worker 1 not back yet
                    answers = await server.per_worker("/health")
                back = answers.get(1)
                if back is not None and back.status_code == 200 and back.json()["pid"] != pids[1]:
                    break
                assert back is None or back.status_code < 500, back.text  # not a crash
                await trio.sleep(0.2)
        assert answers[0].json()["pid"] == pids[0]  # the other worker went on
        exited = [e for e in server.log_events() if e["event"] == "worker.exited"]
        assert [(e["worker"], e["pid"], e["exit"]) for e in exited] == [(1, pids[1], "SIGKILL")]
        text = (await server.get("/metrics")).text
        assert metric(text, 'switchboard_call_capacity{kind="all"}') == 200  # both count again


async def test_sigterm_drains_every_worker_then_the_server_stops(
    database_url: str, tmp_path: Path
) -> None:
    async with multi_worker_server(
        database_url, tmp_path, "--max-local-calls-per-worker", "4"
    ) as server:
        async with AsyncExitStack() as stack:
            calls, _ = await one_call_per_worker(server, stack)
            server.process.send_signal(signal.SIGTERM)
            with trio.fail_after(30):
                while True:
                    answers = await server.per_worker("/ready")
                    if all(r.status_code == 503 for r in answers.values()):
                        break
            assert {r.json()["status"] for r in answers.values()} == {"draining"}
            busy = ET.fromstring((await server.webhook()).text)
            assert [e.tag for e in busy] == ["Say", "Hangup"]  # the example's when_busy: message
            with pytest.raises(trio_websocket.ConnectionRejected) as caught:
                await stack.enter_async_context(realtime_call(server))
            assert caught.value.status_code == 503
            for ws in calls.values():  # the calls in flight go on
                await ws.send_message(json.dumps({"type": "input_audio_buffer.clear"}))
                await ws.get_message()
            assert server.process.returncode is None
        # Both callers hung up: the workers finish draining and the server stops.
        with trio.fail_after(60):
            assert await server.process.wait() == 0
        exited = [e for e in server.log_events() if e["event"] == "worker.exited"]
        assert sorted((e["worker"], e["exit"]) for e in exited) == [(0, "0"), (1, "0")]
