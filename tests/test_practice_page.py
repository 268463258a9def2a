"""The practice page in a real browser: Debian's Chromium, headless, with a fake microphone.

Chromium's fake capture device plays a caller WAV (silence while the greeting
plays, then "what are your opening hours") through ``getUserMedia`` and the
page's AudioWorklet; the page gets its session in development mode, streams
the microphone over ``WS /v1/voice`` and plays the agent. The test drives the
page over the DevTools protocol (trio-websocket to ``--remote-debugging-port``)
and reads the transcript the user sees.

Skipped only when Chromium is missing outside CI; with ``CI`` set it fails.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import trio
import trio_websocket

from switchboard.actors.local.tts import synthesize_at
from switchboard.actors.local.wavfile import write_wav
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.server import serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RATE = 16000

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip(
        "Chromium is not installed (apt-get install -y chromium); CI installs it",
        allow_module_level=True,
    )


def caller_wav(path: Path) -> Path:
    """6 s of silence (the greeting plays), the caller's line, then 5 s of silence."""
    line = synthesize_at("what are your opening hours", RATE) // 2
    silence = np.zeros(RATE * 6, dtype=np.int16)
    write_wav(path, RATE, np.concatenate([silence, line, silence[: RATE * 5]]))
    return path


@pytest.fixture
async def server_url(
    database_url: str, tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[str]:
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path / "data",
        database_url=database_url,
        twilio_auth_token="test-auth-token",
        log_format="console",
    )
    assert settings.dev_mode  # no signing secrets: /practice makes its own sessions
    urls = await nursery.start(serve, settings)
    yield urls[0]
    nursery.cancel_scope.cancel()


class DevTools:
    """A DevTools protocol session on one page target."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> Any:
        message_id = next(self._ids)
        await self._ws.send_message(
            json.dumps({"id": message_id, "method": method, "params": params})
        )
        while True:
            reply = json.loads(await self._ws.get_message())
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


async def page_target(profile: Path) -> str:
    """The page's DevTools WebSocket URL, once Chromium has written its port."""
    port_file = profile / "DevToolsActivePort"
    with trio.fail_after(30):
        while not port_file.exists() or not port_file.read_text().strip():
            await trio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with httpx.AsyncClient() as client:
            while True:
                targets = (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
                await trio.sleep(0.1)


CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
)


@asynccontextmanager
async def chromium_tab(
    nursery: trio.Nursery, profile: Path, url: str, *flags: str
) -> AsyncIterator[DevTools]:
    """Headless Chromium on ``url`` (profile folder ``profile``, more ``flags``), driven
    over the DevTools protocol; killed on the way out."""
    assert CHROMIUM is not None, "CI must have Chromium (apt-get install -y chromium)"
    command = [
        CHROMIUM,
        *CHROMIUM_FLAGS,
        *flags,
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        url,
    ]
    browser = await nursery.start(
        lambda task_status: trio.run_process(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            task_status=task_status,
        )
    )
    try:
        async with trio_websocket.open_websocket_url(
            await page_target(profile), max_message_size=64 * 1024 * 1024
        ) as ws:
            yield DevTools(ws)
    finally:
        browser.kill()


async def start_call(page: DevTools) -> None:
    """Once the page has loaded, press "Start call"."""
    with trio.fail_after(20):
        while not await page.evaluate(
            "document.readyState === 'complete' && !!document.getElementById('start')"
        ):
            await trio.sleep(0.1)
    await page.evaluate("document.getElementById('start').click()")


TRANSCRIPT = (
    "JSON.stringify([...document.querySelectorAll('#transcript li')]"
    ".map(li => [li.dataset.role, li.textContent]))"
)


async def test_practice_page_shows_the_greeting_and_the_answer(
    server_url: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    assert CHROMIUM is not None, "CI must have Chromium (apt-get install -y chromium)"
    wav = caller_wav(tmp_path / "caller.wav")
    profile = tmp_path / "profile"
    flags = (
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
    )
    async with chromium_tab(nursery, profile, server_url + "/practice", *flags) as page:
        await start_call(page)
        lines: list[list[str]] = []
        with trio.move_on_after(90):
            while not any(role == "agent" and "Monday to Friday" in text for role, text in lines):
                await trio.sleep(0.5)
                lines = json.loads(await page.evaluate(TRANSCRIPT))
        status = await page.evaluate("document.getElementById('status').textContent")
        timeline = await page.evaluate("document.getElementById('timeline').innerText")
        await page.evaluate("document.getElementById('stop').click()")

    context = f"transcript={lines} status={status!r} timeline={timeline!r}"
    roles = [role for role, _ in lines]
    assert lines and lines[0][0] == "agent", context
    assert "Bright Smile Dental" in lines[0][1], context
    assert "caller" in roles, context
    assert lines[roles.index("caller")][1].strip(), context  # what the recognizer heard
    answer = [text for role, text in lines[roles.index("caller") :] if role == "agent"]
    assert answer and "Monday to Friday" in answer[0], context
    assert "tool lookup_hours called" in timeline, context


async def audio_settled(page: DevTools) -> float:
    """The agent audio the page has scheduled (ms), once no more has come for a second
    (the server sends it paced to real time)."""
    last = -1.0
    with trio.fail_after(60):
        while True:
            now = float(await page.evaluate("agentAudioMs"))
            if now == last and now > 0:
                return now
            last = now
            await trio.sleep(1.0)


async def test_a_line_typed_in_the_practice_page_is_answered_shown_and_spoken(
    server_url: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """No microphone (the permission is denied): the trainee types instead of speaking."""
    assert CHROMIUM is not None, "CI must have Chromium (apt-get install -y chromium)"
    profile = tmp_path / "profile"
    url = server_url + "/practice"
    async with chromium_tab(nursery, profile, url, "--deny-permission-prompts") as page:
        await start_call(page)
        lines: list[list[str]] = []
        with trio.fail_after(60):  # the greeting, then the box is open for typing
            while not (
                lines and not await page.evaluate("document.getElementById('line').disabled")
            ):
                await trio.sleep(0.2)
                lines = json.loads(await page.evaluate(TRANSCRIPT))
        status = await page.evaluate("document.getElementById('status').textContent")
        heard_before = await audio_settled(page)  # the greeting has all come (in real time)
        await page.evaluate(
            "document.getElementById('line').value = 'what are your opening hours';"
            "document.getElementById('send').click()"
        )
        typed_box = await page.evaluate("document.getElementById('line').value")
        with trio.move_on_after(60):
            while not any(role == "agent" and "Monday to Friday" in text for role, text in lines):
                await trio.sleep(0.2)
                lines = json.loads(await page.evaluate(TRANSCRIPT))
        heard_after = await audio_settled(page)  # the rest of the answer's audio
        timeline = await page.evaluate("document.getElementById('timeline').innerText")
        await page.evaluate("document.getElementById('stop').click()")

    context = f"transcript={lines} status={status!r} timeline={timeline!r}"
    assert "no microphone: typing only" in timeline, context
    assert typed_box == "", context  # sent: the box is ready for the next line
    assert "Bright Smile Dental" in lines[0][1], context
    assert ["caller", "what are your opening hours"] in lines, context  # exactly as typed
    caller_at = lines.index(["caller", "what are your opening hours"])
    answer = [text for role, text in lines[caller_at:] if role == "agent"]
    assert answer and "Monday to Friday" in answer[0], context
    assert "tool lookup_hours called" in timeline, context
    assert heard_after - heard_before > 2000, context  # the answer was spoken, not only shown
