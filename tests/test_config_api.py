"""The runtime configuration API end to end: a real ``serve`` process, PostgreSQL, calls.

The server starts with ``ENGINE_API_KEY`` and the OpenAI Realtime key in its
environment (its URL a closed port: a call given ``openai-realtime`` first fails over to
``local`` at once, and ``session.start`` says which chain it got and why).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
from fault_support import ServerProcess, poll, server_process, twilio_call

from switchboard.actors.local.tts import synthesize_ulaw

ADMIN = "sbe_test-admin-key-0123456789"
OPENAI_KEY = "sk-env-secret-0123456789"
ENV = {
    "ENGINE_API_KEY": ADMIN,
    "OPENAI_API_KEY": OPENAI_KEY,
    "OPENAI_REALTIME_URL": "ws://127.0.0.1:9/v1/realtime",
    "LLM_MODEL": "env-model",
}


async def admin(
    server: ServerProcess, method: str, path: str, body: Any = None, key: str | None = ADMIN
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(method, server.url + path, json=body, headers=headers)


def session_start(server: ServerProcess, session_id: str) -> dict[str, Any] | None:
    rows = server.rows(
        "select payload from call_events where session_id = %s and type = 'session.start'",
        session_id,
    )
    return dict(rows[0][0]) if rows else None


def field(body: dict[str, Any], name: str) -> dict[str, Any]:
    value: dict[str, Any] = body["config"][name]
    return value


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


async def test_the_configuration_api_end_to_end(database_url: str, tmp_path: Path) -> None:
    question = synthesize_ulaw("what are your opening hours")
    async with server_process(tmp_path, database_url, **ENV) as server:
        # Only the admin key opens it (a tenant's API key does not).
        assert (await admin(server, "GET", "/config", key=None)).status_code == 401
        assert (await admin(server, "GET", "/config", key=server.api_key)).status_code == 401
        assert (await admin(server, "GET", "/presets", key="sbe_wrong")).status_code == 401

        start = await admin(server, "GET", "/config")
        assert start.status_code == 200, start.text
        assert OPENAI_KEY not in start.text
        body = start.json()
        assert field(body, "openai_api_key") == {"set": True, "source": "env"}
        assert field(body, "gemini_api_key") == {"set": False, "source": "default"}
        assert field(body, "llm_model") == {"value": "env-model", "source": "env"}
        assert field(body, "chain") == {"value": None, "source": "default"}
        assert body["api_version"] == 0

        # An invalid PUT: every bad field named, nothing changed.
        bad = await admin(
            server, "PUT", "/config", {"chain": ["gpt-9"], "llm_model": "", "colour": "red"}
        )
        assert bad.status_code == 422, bad.text
        assert set(bad.json()["fields"]) == {"chain", "llm_model", "colour"}
        assert (await admin(server, "GET", "/config")).json() == body
        checked = await admin(server, "POST", "/config/validate", {"chain": ["local"]})
        assert (checked.status_code, checked.json()) == (200, {"valid": True})
        assert (await admin(server, "GET", "/config")).json()["api_version"] == 0

        async with twilio_call(server) as in_flight:
            await in_flight.wait_greeting()
            before = await poll(lambda: session_start(server, in_flight.session_id), "start")
            assert (before["provider"], before["mode_source"]) == ("local", "agent")

            new_key = "sk-api-secret-9876543210"
            put = await admin(
                server, "PUT", "/config", {"chain": ["openai-realtime"], "openai_api_key": new_key}
            )
            assert put.status_code == 200, put.text
            assert new_key not in put.text and OPENAI_KEY not in put.text
            assert field(put.json(), "chain") == {"value": ["openai-realtime"], "source": "api"}
            assert field(put.json(), "openai_api_key") == {"set": True, "source": "api"}

            # The next call runs on the new chain...
            async with twilio_call(server) as after:
                await after.wait_greeting()
                started = await poll(lambda: session_start(server, after.session_id), "start")
            assert started["chain"][0] == "openai-realtime"
            assert started["mode_source"] == "config"
            # ...while the call in flight keeps its own: still answered, never switched.
            assert await in_flight.ask(question) is not None
            types = [
                t
                for (t,) in server.rows(
                    "select type from call_events where session_id = %s", in_flight.session_id
                )
            ]
            assert "failover.switch" not in types and "provider.failed" not in types

        # The file layer: an edit is picked up by itself, and /config/reload reads it now.
        config_file = server.data_dir / "config.yaml"
        write_atomically(config_file, "llm_model: file-model\nchain: [local]\n")

        async def file_model() -> bool:
            now = (await admin(server, "GET", "/config")).json()
            return field(now, "llm_model") == {"value": "file-model", "source": "file"}

        await poll(file_model, "the file's llm_model in force", timeout_s=30)
        write_atomically(config_file, "llm_model: reloaded-model\n")
        reloaded = await admin(server, "POST", "/config/reload")
        assert field(reloaded.json(), "llm_model") == {"value": "reloaded-model", "source": "file"}
        # API over file over env: the API's chain stays; cleared, the file's shows.
        assert field(reloaded.json(), "chain")["source"] == "api"
        write_atomically(config_file, "chain: [local]\nllm_model: [not, text]\n")
        refused = await admin(server, "POST", "/config/reload")
        assert refused.status_code == 422 and "llm_model" in refused.json()["error"]
        write_atomically(config_file, "chain: [local]\n")
        assert (await admin(server, "POST", "/config/reload")).status_code == 200
        cleared = await admin(server, "PUT", "/config", {"chain": None})
        assert field(cleared.json(), "chain") == {"value": ["local"], "source": "file"}
        assert field(cleared.json(), "llm_model") == {"value": "env-model", "source": "env"}

        presets = await admin(server, "GET", "/presets")
        assert set(presets.json()["presets"]) >= {
            "openai-realtime",
            "gemini-live",
            "cascaded-groq-deepgram",
            "local",
        }
        by_preset = await admin(server, "PUT", "/config", {"preset": "gemini-live"})
        assert field(by_preset.json(), "chain") == {"value": ["gemini-live"], "source": "api"}
        # Secrets never appear, in any answer or in the log.
        assert new_key not in json.dumps(by_preset.json())
        assert new_key not in server.log_text() and OPENAI_KEY not in server.log_text()
        server.assert_no_traceback()


async def test_a_change_reaches_every_worker(database_url: str, tmp_path: Path) -> None:
    """Under ``--workers 2`` a PUT answered by one worker is applied by both: every new
    call, whichever worker takes it, runs on the new chain."""
    server = ServerProcess(
        tmp_path / "data", database_url, tmp_path / "server.log", dict(ENV), workers=2
    )
    try:
        await server.start()
        put = await admin(server, "PUT", "/config", {"chain": ["openai-realtime"]})
        version = put.json()["api_version"]
        applied: set[str] = set()

        async def both_applied() -> bool:  # each request on a new connection: any worker
            answer = await admin(server, "GET", "/config")
            if answer.json()["api_version"] == version:
                applied.add(answer.headers["x-switchboard-worker"])
            return applied == {"0", "1"}

        await poll(both_applied, "both workers on the new version", timeout_s=30, every_s=0.05)
        workers: set[str] = set()
        for _ in range(12):
            async with twilio_call(server) as call:
                await call.phone.wait_for(lambda c=call: c.frames_heard > 0, 30)
                workers.add(call.stream_headers.get("x-switchboard-worker", "?"))
                started = await poll(lambda c=call: session_start(server, c.session_id), "start")
            assert (started["chain"][0], started["mode_source"]) == ("openai-realtime", "config")
            if len(workers) == 2:
                break
        assert workers == {"0", "1"}, workers
    finally:
        await server.stop()
