"""A runtime on loopback for the session, token and browser-call tests.

Unlike ``serve`` it hands the test its :class:`Runtime`, so a test can rotate
the keyring, set the server draining, and count the calls that started.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
import trio
import trio_websocket
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve

from switchboard.actors.local.tts import synthesize_at
from switchboard.orchestrator import browser_routes
from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.app import create_app
from switchboard.orchestrator.call import CallResources
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.recording import open_recordings
from switchboard.orchestrator.runtime import Runtime
from switchboard.orchestrator.server import example_agent_path
from switchboard.orchestrator.store import Store
from switchboard.orchestrator.tokens import Keyring

KEYRING = Keyring.parse("k1=" + "1" * 40)


@dataclass
class Harness:
    url: str
    rt: Runtime
    database_url: str
    tenant_id: UUID
    agent_id: UUID
    api_key: str
    calls_started: list[UUID] = field(default_factory=list)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://")

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, args).fetchall()

    def snapshot(self) -> list[tuple[Any, ...]]:
        """Everything a call would change: sessions, events, spent tokens."""
        return self.rows(
            "select 's', id::text, status, coalesce(started_at::text, '') from voice_sessions"
            " union all select 'e', session_id::text, type, seq::text from call_events"
            " union all select 't', jti, session_id::text, '' from session_token_uses"
            " order by 1, 2, 3, 4"
        )

    async def post_session(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.api_key}"}
        async with httpx.AsyncClient() as client:
            return await client.post(self.url + "/v1/sessions", json=body, headers=headers)

    async def new_session(self, **body: Any) -> dict[str, Any]:
        response = await self.post_session({"agent_id": str(self.agent_id), **body})
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result


async def start_harness(
    nursery: trio.Nursery,
    store: Store,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    keyring: Keyring = KEYRING,
    recordings: bool = False,
) -> Harness:
    agent = load_agent_file(example_agent_path())
    agent_id = await trio.to_thread.run_sync(store.apply_agent, agent)
    tenant_id = await trio.to_thread.run_sync(store.ensure_tenant, agent.tenant)
    api_key = await trio.to_thread.run_sync(store.create_api_key, tenant_id)
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        database_url=database_url,
        log_format="console",
        playout_lead_ms=300,
    )
    rt = Runtime(
        settings=settings,
        store=store,
        resources=CallResources(
            store=store,
            spool_dir=tmp_path / "spool",
            recordings=open_recordings(settings) if recordings else None,
        ),
        twilio_auth_token="test-auth-token",
        keyring=keyring,
    )
    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    urls = await nursery.start(hypercorn_serve, create_app(rt), config)
    rt.settings = replace(settings, port=int(urls[0].rsplit(":", 1)[1]))
    harness = Harness(urls[0], rt, database_url, tenant_id, agent_id, api_key)

    real_run_call = browser_routes.run_call

    async def counting_run_call(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        harness.calls_started.append(ctx.session_id)
        return await real_run_call(ctx, *args, **kwargs)

    monkeypatch.setattr(browser_routes, "run_call", counting_run_call)
    return harness


def connect_args(
    carrier: str, url: str, token: str
) -> tuple[str, Sequence[str], list[tuple[bytes, bytes]]]:
    """``(url, subprotocols, extra_headers)`` carrying ``token`` the way ``carrier`` does."""
    if carrier == "subprotocol":
        return url, ["switchboard.v1", token], []
    if carrier == "authorization":
        return url, [], [(b"Authorization", f"Bearer {token}".encode())]
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}token={token}", [], []


async def messages(
    ws: trio_websocket.WebSocketConnection, until: Any, timeout_s: float
) -> list[Any]:
    """Read JSON messages until ``until(messages)`` is true (or fail after ``timeout_s``)."""
    seen: list[Any] = []
    with trio.fail_after(timeout_s):
        while not until(seen):
            seen.append(json.loads(await ws.get_message()))
    return seen


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def of(seen: list[dict[str, Any]], event: str, **fields: Any) -> list[dict[str, Any]]:
    return [m for m in seen if m["event"] == event and all(m[k] == v for k, v in fields.items())]


async def say(ws: trio_websocket.WebSocketConnection, text: str, rate: int) -> None:
    """The caller's line then 1.5 s of silence, in 20 ms messages (faster than real time)."""
    pcm = synthesize_at(text, rate).tobytes() + bytes(rate * 3)
    step = rate // 50 * 2
    for i in range(0, len(pcm), step):
        await ws.send_message(json.dumps({"event": "audio", "payload": b64(pcm[i : i + step])}))
