"""`python -m switchboard.testing MODE` serves the fakes and prints how to reach them."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from switchboard.actors.providers import connect_websocket
from switchboard.testing.__main__ import DEMO_SCRIPT, main, serve_mode


async def test_the_openai_fake_is_reachable_at_the_url_it_prints() -> None:
    async with trio.open_nursery() as nursery:
        env = await nursery.start(serve_mode, "openai-realtime", DEMO_SCRIPT, "127.0.0.1", 0)
        async with connect_websocket(env["OPENAI_REALTIME_URL"] + "?model=m", []) as ws:
            first = json.loads(await ws.get_message())
        assert first["type"] == "session.created"
        nursery.cancel_scope.cancel()


async def test_cascaded_starts_speech_to_text_chat_and_speech_fakes() -> None:
    async with trio.open_nursery() as nursery:
        env = await nursery.start(serve_mode, "cascaded", DEMO_SCRIPT, "127.0.0.1", 0)
        assert set(env) == {"STT_URL", "LLM_BASE_URL", "TTS_BASE_URL"}
        async with httpx.AsyncClient() as http:
            speech = await http.post(
                env["TTS_BASE_URL"] + "/audio/speech",
                json={"model": "m", "input": "Hello.", "voice": "v", "response_format": "pcm"},
            )
        assert speech.status_code == 200 and len(speech.content) > 4800  # > 100 ms at 24 kHz
        nursery.cancel_scope.cancel()


def test_an_unknown_mode_or_a_missing_script_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["telepathy"])
    assert exit_.value.code == 2
    assert main(["openai-realtime", "--script", "/nonexistent.yaml"]) == 2
    assert "nonexistent.yaml" in capsys.readouterr().out
