"""Per-call mode overrides on every door, as ``session.start`` records them.

A real server on loopback and PostgreSQL. The agent's own chain starts on
``openai-realtime`` (credentials set, its URL a closed port: the call fails over to
``local`` at once, and ``session.start`` still says which chain the call was given and
``mode_source`` why):

* a browser session made with ``mode: local`` runs on ``local`` (``session``);
* a ``/v1/realtime`` call with a ``test_mode`` session token runs on ``local``
  (``test_mode``); with an API key and no override, on the configured chain
  (``config``), else the agent's (``agent``);
* a Twilio call whose webhook URL says ``?mode=local`` runs on ``local`` (``query``), a
  call to a number the agent file gives ``mode: local`` likewise (``number``), and an
  unknown ``?mode=`` is ignored.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import trio
import trio_websocket
from browser_support import Harness, connect_args, start_harness
from twilio.request_validator import RequestValidator

from switchboard.actors.providers import Endpoints
from switchboard.codecs import twilio_media as wire
from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.call_chain import with_chain_first
from switchboard.orchestrator.caller import twilio_sid
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.runtime_config import effective, env_layer
from switchboard.orchestrator.server import bootstrap, example_agent_path
from switchboard.orchestrator.store import Store

CLOSED = "ws://127.0.0.1:9/v1/realtime"
"""Nothing listens there: an openai-realtime link fails at once and the call goes on."""
NUMBER_MODE = "+15005550123"


@pytest.fixture
async def h(
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> Harness:
    harness = await start_harness(nursery, store, database_url, tmp_path, monkeypatch)
    endpoints = Endpoints(openai_api_key="sk-test", openai_realtime_url=CLOSED)
    harness.rt.settings = replace(harness.rt.settings, endpoints=endpoints)
    harness.rt.resources.endpoints = endpoints
    example = load_agent_file(example_agent_path())
    agent = with_chain_first(example, ["openai-realtime"])
    agent = replace(
        agent,
        phone_numbers=(*example.phone_numbers, NUMBER_MODE),
        number_modes={NUMBER_MODE: "local"},
    )
    await trio.to_thread.run_sync(store.apply_agent, agent)
    return harness


async def session_start(h: Harness, session_id: str | UUID) -> dict[str, Any]:
    """The call's ``session.start`` payload, once the event logger has written it."""
    with trio.fail_after(30):
        while True:
            rows = h.rows(
                "select payload from call_events where session_id = %s and type = 'session.start'",
                str(session_id),
            )
            if rows:
                payload: dict[str, Any] = rows[0][0]
                return payload
            await trio.sleep(0.05)


def head(payload: dict[str, Any]) -> tuple[str, str, str]:
    return payload["provider"], payload["chain"][0], payload["mode_source"]


async def browser_call(h: Harness, **session: Any) -> dict[str, Any]:
    return await browser_call_with(h, await h.new_session(**session))


async def realtime_call(h: Harness, credential: str, agent: str = "receptionist") -> dict[str, Any]:
    url = f"{h.ws_url}/v1/realtime?agent_id={agent}"
    headers = [(b"authorization", f"Bearer {credential}".encode())]
    async with trio_websocket.open_websocket_url(url, extra_headers=headers) as ws:
        created = json.loads(await ws.get_message())
        assert created["type"] == "session.created", created
        await ws.send_message(json.dumps({"type": "session.update", "session": {}}))
        session_id = UUID(created["session"]["id"].removeprefix("sess_"))
        return await session_start(h, session_id)


async def twilio_call(h: Harness, to: str, query: str = "") -> dict[str, Any]:
    """The signed webhook (``query`` on its URL), then the stream's ``connected`` and
    ``start`` with the TwiML's parameters; the call's ``session.start``."""
    url = h.rt.settings.base_url + "/twilio/incoming" + query
    params = {"CallSid": twilio_sid("CA"), "From": "+15005550001", "To": to}
    signature = RequestValidator("test-auth-token").compute_signature(url, params)
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
    assert answer.status_code == 200, answer.text
    stream = ET.fromstring(answer.text).find("./Connect/Stream")
    assert stream is not None, answer.text
    parameters = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    encoder = wire.InboundEncoder(twilio_sid("MZ"), params["CallSid"], twilio_sid("AC"))
    async with trio_websocket.open_websocket_url(stream.get("url", "")) as ws:
        await ws.send_message(encoder.connected())
        await ws.send_message(encoder.start(parameters))
        return await session_start(h, parameters["session_id"])


async def test_a_browser_session_made_with_mode_local_runs_on_local(h: Harness) -> None:
    assert head(await browser_call(h, mode="local")) == ("local", "local", "session")
    # Without a mode, the agent's own chain: openai-realtime first.
    assert head(await browser_call(h)) == ("openai-realtime", "openai-realtime", "agent")


async def test_a_realtime_call_with_a_test_mode_token_runs_on_local(h: Harness) -> None:
    made = await h.new_session(test_mode=True)
    assert (made["mode"], made["mode_source"]) == ("local", "test_mode")
    payload = await realtime_call(h, made["token"])
    assert head(payload) == ("local", "local", "test_mode")
    asked = await h.new_session(mode="local")
    assert head(await realtime_call(h, asked["token"])) == ("local", "local", "session")


async def test_without_an_override_the_configured_chain_leads_then_the_agents(
    h: Harness,
) -> None:
    agent_only = await realtime_call(h, h.api_key)
    assert head(agent_only) == ("openai-realtime", "openai-realtime", "agent")
    h.rt.configured_chain = lambda: ("local",)
    configured = await realtime_call(h, h.api_key, agent=str(h.agent_id))
    assert head(configured) == ("local", "local", "config")
    assert configured["chain"] == ["local", "openai-realtime"]  # the agent's chain follows
    # A session's own mode still wins over the configuration.
    made = await h.new_session(mode="openai-realtime")
    assert head(await browser_call_with(h, made)) == (
        "openai-realtime",
        "openai-realtime",
        "session",
    )


async def browser_call_with(h: Harness, made: dict[str, Any]) -> dict[str, Any]:
    url, subprotocols, headers = connect_args("subprotocol", h.ws_url + "/v1/voice", made["token"])
    async with trio_websocket.open_websocket_url(
        url, subprotocols=subprotocols, extra_headers=headers
    ):
        return await session_start(h, made["session_id"])


@pytest.mark.parametrize(
    ("to", "query", "expected"),
    [
        ("+15005550006", "?mode=local", ("local", "local", "query")),
        (NUMBER_MODE, "", ("local", "local", "number")),
        ("+15005550006", "", ("openai-realtime", "openai-realtime", "agent")),
        ("+15005550006", "?mode=gpt-9", ("openai-realtime", "openai-realtime", "agent")),
    ],
)
async def test_a_twilio_call_takes_the_webhooks_mode_or_the_numbers(
    h: Harness, to: str, query: str, expected: tuple[str, str, str]
) -> None:
    assert head(await twilio_call(h, to, query)) == expected


def test_serve_mode_is_for_the_run_and_leaves_the_stored_agent(
    store: Store, tmp_path: Path
) -> None:
    """``serve --mode`` once rewrote the demo agent in the database for good; now it is
    the run's configured chain, and the agent stored stays as its file says."""
    settings = Settings(data_dir=tmp_path, demo_mode="openai-realtime")
    bootstrap(store, settings)
    record = store.agent_for_number("+15005550006")
    assert record is not None
    packaged = load_agent_file(example_agent_path())
    assert (record.spec.mode, record.spec.fallback) == (packaged.mode, packaged.fallback)
    config = effective({"env": env_layer(settings.endpoints, settings.demo_mode)})
    assert (config.chain, config.sources["chain"]) == (("openai-realtime",), "env")
    assert effective({"env": env_layer(settings.endpoints)}).chain is None  # plain serve
