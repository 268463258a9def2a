"""The timeline page of a recorded failover call, in headless Chromium, through the real server.

A real server on loopback (embedded PostgreSQL, recordings on) answers a phone call
placed as Twilio would; the receptionist's first provider is a fake OpenAI Realtime
server that stalls 600 ms into its first answer, so the call fails over to ``local``,
which answers (with the ``lookup_hours`` tool) and later hangs up. The page is
fetched with the tenant's API key, then opened in Chromium by its signed link: both
waveforms must have drawn, the failover must be marked where it happened, and clicking
a turn must play that span of the signed WAV. The route's refusals are tested
without a browser.

Skipped only when Chromium is missing outside CI (``test_practice_page``'s rule).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import trio
from browser_support import Harness, start_harness
from test_practice_page import CHROMIUM, chromium_tab

from switchboard.actors.providers import Endpoints
from switchboard.orchestrator.agent_file import load_agent_file
from switchboard.orchestrator.caller import CallerLine, place_call
from switchboard.orchestrator.errors import StorageError
from switchboard.orchestrator.recording_rows import get_recording
from switchboard.orchestrator.recording_urls import sign_playback
from switchboard.orchestrator.server import example_agent_path
from switchboard.orchestrator.store import Store
from switchboard.orchestrator.timeline_urls import sign_timeline, timeline_path
from switchboard.testing import Fault, Script, Turn
from switchboard.testing import serve as serve_fake
from switchboard.testing.fake_openai_realtime import FakeOpenAIRealtime

NUMBER = "+15005550006"  # the example receptionist's
STALLING = Script(
    greeting="Thanks for calling Bright Smile Dental. How can I help?",
    turns=(
        Turn(
            caller_text="what are your opening hours",
            say="We are open from eight in the morning until six in the evening on weekdays.",
        ),
    ),
    faults=(Fault("stall", turn=1, after_audio_ms=600),),
)


@dataclass
class Recorded:
    h: Harness
    session_id: UUID
    events: list[dict[str, Any]]

    def at(self, type_: str) -> float:
        return float(next(e["t_ms"] for e in self.events if e["type"] == type_))


@pytest.fixture
async def recorded(
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> Recorded:
    """A finished, recorded phone call that failed over from openai-realtime to local."""
    fake = FakeOpenAIRealtime(STALLING)
    port = await nursery.start(serve_fake, fake.handler)
    h = await start_harness(nursery, store, database_url, tmp_path, monkeypatch, recordings=True)
    endpoints = Endpoints(openai_realtime_url=f"ws://127.0.0.1:{port}/v1/realtime")
    h.rt.settings = replace(h.rt.settings, endpoints=endpoints)
    h.rt.resources.endpoints = endpoints
    agent = replace(
        load_agent_file(example_agent_path()), mode="openai-realtime", fallback=("local",)
    )
    await trio.to_thread.run_sync(store.apply_agent, agent)
    summary = await place_call(
        h.url,
        [CallerLine.say("what are your opening hours"), CallerLine.say("thank you goodbye")],
        to_number=NUMBER,
        auth_token="test-auth-token",
        api_key=h.api_key,
        realtime=False,
    )
    session_id = UUID(summary.session_id)
    with trio.fail_after(30):  # the recording is sealed after the call's end
        while True:
            row = await trio.to_thread.run_sync(get_recording, store, h.tenant_id, session_id)
            if row is not None and row.status == "complete":
                break
            await trio.sleep(0.05)
    events = await trio.to_thread.run_sync(store.read_events, h.tenant_id, session_id)
    types = [e["type"] for e in events]
    assert "failover.switch" in types and types[-1] == "session.end", types
    return Recorded(h, session_id, events)


async def get(url: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url, **kw)


async def post(url: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, **kw)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


CANVAS_INK = """JSON.stringify([...document.querySelectorAll('canvas[data-track]')].map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let ink = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) ink++;
  return [c.dataset.track, ink, c.width * c.height];
}))"""
MARKER_AT = """JSON.stringify((() => {
  const m = document.querySelector('.marker[data-kind="failover"]');
  const s = document.getElementById('stage').getBoundingClientRect();
  return m && [Number(m.dataset.tMs), (m.getBoundingClientRect().left - s.left) / s.width];
})())"""
CLICK_ANSWER = """(() => {
  const turns = [...document.querySelectorAll('.turn[data-who="agent"]')];
  const answer = turns.find(t => t.textContent.includes('Monday'));
  answer.click();
  return Number(answer.dataset.startMs);
})()"""


async def test_the_page_shows_both_waveforms_and_the_failover_and_plays_a_turn(
    recorded: Recorded, tmp_path: Path, nursery: trio.Nursery
) -> None:
    assert CHROMIUM is not None, "CI must have Chromium (apt-get install -y chromium)"
    h, sid = recorded.h, recorded.session_id
    page = await get(f"{h.url}/v1/calls/{sid}/timeline", headers=bearer(h.api_key))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/recording/both.wav?token=" in page.text  # the signed playback URL
    link = await post(f"{h.url}/v1/calls/{sid}/timeline/url", headers=bearer(h.api_key))
    assert link.status_code == 200, link.text
    profile = tmp_path / "profile"
    async with chromium_tab(nursery, profile, link.json()["url"], "--window-size=1400,900") as tab:
        with trio.fail_after(30):
            while not await tab.evaluate("window.timelineReady === true"):
                await trio.sleep(0.1)
        ink = {name: (n, area) for name, n, area in json.loads(await tab.evaluate(CANVAS_INK))}
        marker = json.loads(await tab.evaluate(MARKER_AT))
        kinds = await tab.evaluate(
            "[...document.querySelectorAll('.marker')].map(m => m.dataset.kind)"
        )
        start_ms = await tab.evaluate(CLICK_ANSWER)
        played: list[Any] = []
        with trio.move_on_after(20):
            while True:
                played = await tab.evaluate(
                    "[audio.currentTime, audio.paused, audio.error && audio.error.code,"
                    " audio.currentSrc]".replace("audio", "document.getElementById('audio')")
                )
                if played[0] > start_ms / 1000 + 0.2 and not played[1]:
                    break
                await trio.sleep(0.1)

    # Both tracks drew a waveform: the greeting and answers on one, the caller's lines on
    # the other (ink is the waveform alone: the canvas is transparent elsewhere).
    for name in ("caller", "agent"):
        n, area = ink[name]
        assert n > area * 0.01, (name, n, area)
    # The failover is marked at the switch's time, where the axis puts it.
    switch_ms, fraction = marker
    assert switch_ms == pytest.approx(recorded.at("failover.switch"))
    duration = recorded.at("session.end")
    assert fraction * duration == pytest.approx(switch_ms, abs=duration * 0.01)
    assert "provider_failed" in kinds and "tool_call" in kinds
    # Clicking the answer played its span of the signed recording.
    position_s, paused, error, source = played
    assert error is None and "/recording/both.wav?token=" in source, played
    assert position_s > start_ms / 1000 + 0.2 and not paused, played
    ranged = await get(source, headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and ranged.content[:4] == b"RIFF"


async def test_the_timeline_answers_a_key_or_a_signed_link_and_refuses_the_rest(
    recorded: Recorded, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    h, sid = recorded.h, recorded.session_id
    url = f"{h.url}/v1/calls/{sid}/timeline"
    # The tenant's key: the page, or the JSON.
    as_json = await get(url, headers={**bearer(h.api_key), "Accept": "application/json"})
    assert as_json.status_code == 200, as_json.text
    data = as_json.json()
    assert [m["kind"] for m in data["marks"]].count("failover") == 1
    assert data["speech_from"] == "audio" and data["door"] == "twilio"
    assert data["audio_url"].startswith(h.url + f"/v1/calls/{sid}/recording/both.wav?token=")
    by_query = (await get(url + "?format=json", headers=bearer(h.api_key))).json()
    assert by_query["marks"] == data["marks"] and by_query["turns"] == data["turns"]
    page = await get(url, headers=bearer(h.api_key))
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # No key, a wrong key: 401. Another tenant's key: the call does not exist for it.
    assert (await get(url)).status_code == 401
    assert (await get(url, headers=bearer("sb_" + "x" * 32))).status_code == 401
    other = await trio.to_thread.run_sync(store.ensure_tenant, "another-clinic")
    other_key = await trio.to_thread.run_sync(store.create_api_key, other)
    assert (await get(url, headers=bearer(other_key))).status_code == 404
    assert (await post(url + "/url", headers=bearer(other_key))).status_code == 404
    assert (
        await get(f"{h.url}/v1/calls/{uuid4()}/timeline", headers=bearer(h.api_key))
    ).status_code == 404
    assert (
        await get(f"{h.url}/v1/calls/nope/timeline", headers=bearer(h.api_key))
    ).status_code == 400
    # A signed link opens it without a key ...
    made = await post(url + "/url", headers=bearer(h.api_key), json={"expires_in": 120})
    assert made.status_code == 200 and made.json()["expires_at"] <= time.time() + 121
    opened = await get(made.json()["url"])
    assert opened.status_code == 200 and "window.timelineReady" in opened.text
    # ... but not one expired, altered, for another call, or a playback token.
    keyring, issuer = h.rt.keyring, h.rt.settings.token_issuer
    expired, _ = sign_timeline(
        keyring, tenant_id=h.tenant_id, session_id=sid, issuer=issuer, now=time.time() - 7200
    )
    refused = await get(h.url + timeline_path(sid, expired))
    assert refused.status_code == 403 and "expired" in refused.json()["error"]
    token = made.json()["url"].split("token=")[1]
    assert (await get(url + "?token=" + token[:-2] + "xx")).status_code == 403
    elsewhere, _ = sign_timeline(keyring, tenant_id=h.tenant_id, session_id=uuid4(), issuer=issuer)
    assert (await get(url + "?token=" + elsewhere)).status_code == 403
    row = await trio.to_thread.run_sync(get_recording, store, h.tenant_id, sid)
    playback, _ = sign_playback(
        keyring, tenant_id=h.tenant_id, session_id=sid, recording_id=row.recording_id,
        track="both", issuer=issuer,
    )  # fmt: skip
    assert (await get(url + "?token=" + playback)).status_code == 403
    assert (
        await post(url + "/url", headers=bearer(h.api_key), json={"expires_in": 0})
    ).status_code == 400

    # PostgreSQL away: 503 with Retry-After, never a 500.
    def away(*args: Any, **kw: Any) -> Any:
        raise StorageError("connection refused")

    monkeypatch.setattr(h.rt.store, "read_events", away)
    down = await get(url + "?token=" + token)
    assert down.status_code == 503 and down.headers["retry-after"]
