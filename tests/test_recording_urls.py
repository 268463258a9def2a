"""Signed playback URLs and the recording routes, on a real server with a real PostgreSQL.

The signed URL matrix of issue 12 (expired, altered, other tenant, other session,
other track, replayed after delete): 403, and the recording store is never read
(a counting store says so). Range requests return exact byte ranges.
"""

from __future__ import annotations

import io
import time
import wave
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import UUID, uuid4

import httpx
import jwt
import numpy as np
import pytest
import trio
from browser_support import KEYRING, Harness, start_harness

from switchboard.codecs.recording_format import (
    Kind,
    Record,
    RecordingHeader,
    SegmentWriter,
    TrackFormat,
    WrappedKey,
)
from switchboard.orchestrator.recording_keys import Keyring as RecordingKeyring
from switchboard.orchestrator.recording_keys import new_data_key
from switchboard.orchestrator.recording_playback import RecordingAccess
from switchboard.orchestrator.recording_render import keyring_opener
from switchboard.orchestrator.recording_rows import (
    NewRecording,
    create_recording,
    finish_recording,
    get_recording,
)
from switchboard.orchestrator.recording_store import (
    LocalRecordingStore,
    RecordingMissing,
    RecordingStoreError,
    object_key,
)
from switchboard.orchestrator.recording_urls import sign_playback
from switchboard.orchestrator.store import Store
from switchboard.orchestrator.tokens import Keyring, TokenRejectedError, mint, verify


@dataclass
class CountingStore:
    """A local store that counts what is asked of it; ``failing_deletes`` makes deletes fail."""

    inner: LocalRecordingStore
    gets: int = 0
    deletes: list[str] = field(default_factory=list)
    failing_deletes: int = 0

    def put_file(self, key: str, path: Path) -> None:
        self.inner.put_file(key, path)

    def get(self, key: str) -> bytes:
        self.gets += 1
        return self.inner.get(key)

    def delete(self, key: str) -> None:
        self.deletes.append(key)
        if self.failing_deletes:
            self.failing_deletes -= 1
            raise RecordingStoreError("the bucket is away")
        self.inner.delete(key)


RATE = 16000
RECORDING_KEYS = RecordingKeyring([("k1", b"\x11" * 32)])


def sealed_call(
    tenant_id: UUID, session_id: UUID, keyring: RecordingKeyring
) -> tuple[bytes, bytes]:
    """A real sealed recording of a 12-second call (caller and agent PCM16, 16 kHz, a
    chunk every 20 ms, the agent cleared once) and the data key wrapped by ``keyring``."""
    rng = np.random.default_rng(session_id.int % 2**32)
    records = []
    for i in range(600):
        caller = rng.integers(-20000, 20000, 320, dtype=np.int16).tobytes()
        records.append(Record(Kind.CALLER_AUDIO, 20.0 * i, caller))
        if i % 3 == 0:
            agent = rng.integers(-20000, 20000, 320, dtype=np.int16).tobytes()
            records.append(Record(Kind.AGENT_AUDIO, 20.0 * i + 5, agent))
    records.append(Record(Kind.AGENT_CLEARED, 6000.0, b""))
    data_key = new_data_key()
    kid, wrapped = keyring.wrap(data_key)
    header = RecordingHeader(
        session_id=str(session_id),
        tenant_id=str(tenant_id),
        caller=TrackFormat("pcm16", RATE),
        agent=TrackFormat("pcm16", RATE),
        started_at="2026-12-04T15:00:00+00:00",
        key=WrappedKey("keyring", kid),
    )
    writer = SegmentWriter(data_key, header)
    blob = writer.start() + writer.seal(records[:500]) + writer.seal(records[500:], last=True)
    return blob, wrapped


def tracks(session_id: UUID) -> tuple[np.ndarray, np.ndarray]:
    """What the caller sent and what the caller heard of the agent, PCM16 16 kHz, laid
    out by hand: agent chunks at 60k + 5 ms, silence between them, nothing from the clear
    at 6 s on."""
    rng = np.random.default_rng(session_id.int % 2**32)
    caller = np.zeros(600 * 320, dtype=np.int16)
    agent = np.zeros(96_000, dtype=np.int16)
    heard_until = 0
    for i in range(600):
        caller[i * 320 : (i + 1) * 320] = rng.integers(-20000, 20000, 320, dtype=np.int16)
        if i % 3 == 0:
            chunk = rng.integers(-20000, 20000, 320, dtype=np.int16)
            at = round((20 * i + 5) * RATE / 1000)
            if at < 96_000:
                agent[at : at + 320] = chunk[: 96_000 - at]
                heard_until = min(at + 320, 96_000)
    return caller, agent[:heard_until]  # the track ends with its last chunk heard


def wav_samples(body: bytes, channels: int) -> np.ndarray:
    with wave.open(io.BytesIO(body)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (channels, RATE, 2)
        frames = wav.readframes(wav.getnframes())
    return np.frombuffer(frames, dtype="<i2").reshape(-1, channels)


@dataclass
class Playback:
    h: Harness
    store: Store
    objects: CountingStore
    tmp_path: Path

    async def recorded_call(
        self,
        tenant_id: UUID | None = None,
        *,
        finish: str | None = "complete",
        kind: str = "keyring",
    ) -> UUID:
        """A call of the tenant (default the harness's) with a stored recording."""
        tenant_id = tenant_id or self.h.tenant_id

        def make() -> UUID:
            agent_id = self.store.agent_id_by_name(tenant_id, "receptionist") or self.h.agent_id
            session_id = self.store.create_session(tenant_id, agent_id, transport="browser")
            key = object_key(tenant_id, session_id)
            blob, wrapped = sealed_call(tenant_id, session_id, RECORDING_KEYS)
            create_recording(
                self.store,
                NewRecording(
                    tenant_id,
                    session_id,
                    object_key=key,
                    key_kind=kind,
                    kid="k1" if kind == "keyring" else "rsa:0123abcd",
                    wrapped_key=wrapped,
                    caller_encoding="pcm16",
                    caller_sample_rate=RATE,
                    agent_encoding="pcm16",
                    agent_sample_rate=RATE,
                ),
            )
            staged = self.tmp_path / f"{session_id}.sbrec"
            staged.write_bytes(blob)
            self.objects.put_file(key, staged)
            if finish is not None:
                finish_recording(
                    self.store,
                    tenant_id,
                    session_id,
                    status=finish,
                    size_bytes=len(blob),
                    duration_ms=12_000,
                )
            return session_id

        return await trio.to_thread.run_sync(make)

    async def expected(self, session_id: UUID, track: str) -> bytes:
        """The whole WAV of ``track``, as a GET without Range gives it."""
        url = await self.url(session_id, track=track)
        response = await self.get(url)
        assert response.status_code == 200
        return response.content

    async def post_url(
        self, session_id: UUID | str, body: Any = None, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.h.api_key}"}
        async with httpx.AsyncClient() as client:
            return await client.post(
                f"{self.h.url}/v1/calls/{session_id}/recording/url",
                json=body,
                headers=headers,
                **kwargs,
            )

    async def url(self, session_id: UUID, **body: Any) -> str:
        response = await self.post_url(session_id, body or None)
        assert response.status_code == 200, response.text
        url: str = response.json()["url"]
        return url

    async def get(self, url: str, **headers: str) -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.get(url, headers=headers)

    async def delete(self, session_id: UUID | str, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.h.api_key}"}
        async with httpx.AsyncClient() as client:
            return await client.delete(
                f"{self.h.url}/v1/calls/{session_id}/recording", headers=headers
            )

    async def other_tenant(self) -> tuple[UUID, str]:
        def make() -> tuple[UUID, str]:
            from switchboard.orchestrator.agent_file import load_agent_file
            from switchboard.orchestrator.server import example_agent_path

            agent = load_agent_file(example_agent_path())
            self.store.apply_agent(replace(agent, tenant="bravo", phone_numbers=()))
            tenant_id = self.store.ensure_tenant("bravo")
            return tenant_id, self.store.create_api_key(tenant_id)

        return await trio.to_thread.run_sync(make)


@pytest.fixture
async def pb(
    store: Store,
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> Playback:
    h = await start_harness(nursery, store, database_url, tmp_path, monkeypatch)
    objects = CountingStore(LocalRecordingStore(tmp_path / "recordings"))
    h.rt.recording_access = RecordingAccess(objects, keyring_opener(RECORDING_KEYS))
    return Playback(h, store, objects, tmp_path)


def _with_path(url: str, session_id: UUID | str | None = None, track: str | None = None) -> str:
    """``url`` with its session or track swapped, the token kept."""
    parts = urlsplit(url)
    segments = parts.path.split("/")  # '', v1, calls, SESSION, recording, TRACK.wav
    if session_id is not None:
        segments[3] = str(session_id)
    if track is not None:
        segments[5] = f"{track}.wav"
    return parts._replace(path="/".join(segments)).geturl()


def _token(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def _with_token(url: str, token: str) -> str:
    return urlsplit(url)._replace(query=f"token={token}").geturl()


# -- making a URL


async def test_a_url_plays_the_whole_recording(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    response = await pb.post_url(session_id)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"url", "expires_at", "track"}
    assert body["track"] == "both"
    assert abs(body["expires_at"] - (time.time() + 900)) < 5
    assert body["url"].startswith(f"{pb.h.url}/v1/calls/{session_id}/recording/both.wav?token=")
    claims = jwt.decode(
        _token(body["url"]),
        KEYRING.secrets["k1"],
        algorithms=["HS256"],
        audience="switchboard:recording",
    )
    row = get_recording(pb.store, pb.h.tenant_id, session_id)
    assert row is not None
    assert (claims["sub"], claims["tenant_id"], claims["rid"], claims["track"]) == (
        str(session_id),
        str(pb.h.tenant_id),
        str(row.recording_id),
        "both",
    )
    assert pb.objects.gets == 0  # making a URL reads nothing
    played = await pb.get(body["url"])
    assert played.status_code == 200
    assert played.headers["content-type"] == "audio/wav"
    assert played.headers["accept-ranges"] == "bytes"
    caller, agent = tracks(session_id)
    stereo = wav_samples(played.content, 2)
    assert np.array_equal(stereo[:, 0], caller)  # sample-exact, left
    assert np.array_equal(stereo[: len(agent), 1], agent)  # right, what was heard
    assert not stereo[len(agent) :, 1].any()  # silence after the clear
    assert int(played.headers["content-length"]) == len(played.content)
    assert "no-store" in played.headers["cache-control"]


@pytest.mark.parametrize("track", ["caller", "agent", "both"])
async def test_each_track_and_a_shorter_life(pb: Playback, track: str) -> None:
    session_id = await pb.recorded_call()
    response = await pb.post_url(session_id, {"track": track, "expires_in": 60})
    assert response.status_code == 200, response.text
    assert response.json()["track"] == track
    assert abs(response.json()["expires_at"] - (time.time() + 60)) < 5
    played = await pb.get(response.json()["url"])
    caller, agent = tracks(session_id)
    if track == "both":
        assert wav_samples(played.content, 2).shape == (len(caller), 2)
    else:
        mono = wav_samples(played.content, 1)[:, 0]
        assert np.array_equal(mono, caller if track == "caller" else agent)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"track": "left"}, "track must be one of caller, agent, both"),
        ({"expires_in": 0}, "1 to 86400"),
        ({"expires_in": 86_401}, "1 to 86400"),
        ({"expires_in": -5}, "1 to 86400"),
        ({"expires_in": "900"}, "whole number"),
        ({"expires_in": 9.5}, "whole number"),
        ({"expires_in": True}, "whole number"),
        ({"trak": "both"}, "unknown field"),
        ([], "JSON object"),
    ],
)
async def test_a_bad_request_is_400_with_the_reason(pb: Playback, body: Any, words: str) -> None:
    session_id = await pb.recorded_call()
    response = await pb.post_url(session_id, body)
    assert response.status_code == 400
    assert words in response.json()["error"]


async def test_a_body_that_is_not_json_is_400(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    response = await pb.post_url(session_id, content=b"track=both")
    assert response.status_code == 400 and "JSON" in response.json()["error"]


async def test_the_longest_life_is_a_day(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    response = await pb.post_url(session_id, {"expires_in": 86_400})
    assert response.status_code == 200
    assert abs(response.json()["expires_at"] - (time.time() + 86_400)) < 5


async def test_what_cannot_get_a_url(pb: Playback) -> None:
    recorded = await pb.recorded_call()
    running = await pb.recorded_call(finish=None)
    rsa = await pb.recorded_call(kind="rsa")
    bravo, bravo_key = await pb.other_tenant()
    bravos = await pb.recorded_call(bravo)

    assert (await pb.post_url(recorded, key="sb_not-a-key")).status_code == 401
    assert (await pb.post_url("not-a-uuid")).status_code == 400
    assert (await pb.post_url(uuid4())).status_code == 404
    assert (await pb.post_url(bravos)).status_code == 404  # another tenant's call
    assert (await pb.post_url(recorded, key=bravo_key)).status_code == 404
    response = await pb.post_url(running)
    assert response.status_code == 409 and "still being recorded" in response.json()["error"]
    response = await pb.post_url(rsa)
    assert response.status_code == 422 and "RSA" in response.json()["error"]
    assert (await pb.delete(recorded)).status_code == 204
    response = await pb.post_url(recorded)
    assert response.status_code == 410 and "deleted" in response.json()["error"]
    assert pb.objects.gets == 0


# -- the signed URL matrix: 403, nothing read


async def _refused(pb: Playback, url: str, words: str) -> None:
    before = pb.objects.gets
    response = await pb.get(url)
    assert response.status_code == 403, (url, response.text)
    assert words in response.json()["error"]
    assert pb.objects.gets == before, "the store was read for a refused URL"


async def test_an_expired_url_is_refused(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    row = get_recording(pb.store, pb.h.tenant_id, session_id)
    assert row is not None
    token, _ = sign_playback(
        KEYRING,
        tenant_id=pb.h.tenant_id,
        session_id=session_id,
        recording_id=row.recording_id,
        track="both",
        ttl_s=900,
        now=time.time() - 901,
    )
    url = f"{pb.h.url}/v1/calls/{session_id}/recording/both.wav?token={token}"
    await _refused(pb, url, "expired")
    fresh, _ = sign_playback(
        KEYRING,
        tenant_id=pb.h.tenant_id,
        session_id=session_id,
        recording_id=row.recording_id,
        track="both",
    )
    assert (await pb.get(_with_token(url, fresh))).status_code == 200  # the control


async def test_an_altered_url_is_refused(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id, track="caller")
    token = _token(url)
    head, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    await _refused(pb, _with_token(url, f"{head}.{payload}.{flipped}"), "bad signature")
    # The payload changed to another track, the signature kept.
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "track": "both"}, "x" * 32, headers={"kid": "k1"})
    forged_payload = forged.split(".")[1]
    await _refused(
        pb,
        _with_path(_with_token(url, f"{head}.{forged_payload}.{signature}"), track="both"),
        "bad signature",
    )
    await _refused(pb, _with_token(url, "not.a.token"), "malformed")
    await _refused(pb, _with_token(url, ""), "malformed")
    unsigned = jwt.encode({**claims}, None, algorithm="none")
    await _refused(pb, _with_token(url, unsigned), "algorithm")
    other_secret = jwt.encode(claims, "2" * 40, algorithm="HS256", headers={"kid": "k1"})
    await _refused(pb, _with_token(url, other_secret), "bad signature")
    unknown_kid = jwt.encode(claims, "2" * 40, algorithm="HS256", headers={"kid": "k9"})
    await _refused(pb, _with_token(url, unknown_kid), "unknown signing key")
    assert (await pb.get(url)).status_code == 200  # the control


async def test_another_session_or_track_is_refused(pb: Playback) -> None:
    first = await pb.recorded_call()
    second = await pb.recorded_call()
    url = await pb.url(first, track="caller")
    await _refused(pb, _with_path(url, session_id=second), "another call")
    await _refused(pb, _with_path(url, track="agent"), "another track")
    await _refused(pb, _with_path(url, track="both"), "another track")
    await _refused(pb, _with_path(url, track="caller.mp3"), "another track")
    assert (await pb.get(url)).status_code == 200


async def test_another_tenant_is_refused(pb: Playback) -> None:
    acme_call = await pb.recorded_call()
    bravo, bravo_key = await pb.other_tenant()
    bravo_call = await pb.recorded_call(bravo)
    response = await pb.post_url(bravo_call, key=bravo_key)
    bravo_url = response.json()["url"]
    await _refused(pb, _with_path(bravo_url, session_id=acme_call), "another call")
    # A token the server signed, claiming bravo, for acme's call and recording: the row is
    # looked up as bravo (row-level security) and is not there.
    row = get_recording(pb.store, pb.h.tenant_id, acme_call)
    assert row is not None
    token, _ = sign_playback(
        KEYRING, tenant_id=bravo, session_id=acme_call, recording_id=row.recording_id, track="both"
    )
    url = f"{pb.h.url}/v1/calls/{acme_call}/recording/both.wav?token={token}"
    await _refused(pb, url, "no such recording")
    # And a recording id that is not the row's (a recording made after the URL).
    token, _ = sign_playback(
        KEYRING, tenant_id=pb.h.tenant_id, session_id=acme_call, recording_id=uuid4(), track="both"
    )
    await _refused(pb, _with_token(url, token), "no such recording")
    assert (await pb.get(bravo_url)).status_code == 200


async def test_a_session_token_is_not_a_playback_token(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id)
    session_token, _ = mint(
        KEYRING,
        session_id=session_id,
        tenant_id=pb.h.tenant_id,
        agent_id=pb.h.agent_id,
        mode="local",
    )
    await _refused(pb, _with_token(url, session_token), "not a playback token")
    # ... nor the other way round: a playback token opens no call.
    with pytest.raises(TokenRejectedError):
        verify(KEYRING, _token(url))


async def test_a_url_replayed_after_delete_is_refused(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id, track="agent")
    assert (await pb.get(url)).status_code == 200
    assert pb.objects.gets == 1
    assert (await pb.get(url, Range="bytes=0-9")).status_code == 206  # from the opened cache
    response = await pb.delete(session_id)
    assert response.status_code == 204 and response.content == b""
    await _refused(pb, url, "deleted")
    await _refused(pb, url, "deleted")


async def test_a_rotated_keyring_still_plays_urls_of_the_old_secret(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id)
    pb.h.rt.keyring = Keyring.parse("k2=" + "2" * 40 + ",k1=" + "1" * 40)
    assert (await pb.get(url)).status_code == 200
    pb.h.rt.keyring = Keyring.parse("k2=" + "2" * 40)
    await _refused(pb, url, "unknown signing key")


# -- ranges


async def test_ranges_return_exact_bytes(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id)
    whole = await pb.expected(session_id, "both")
    size = len(whole)
    for header, start, end in [
        ("bytes=0-99", 0, 100),
        ("bytes=44-44", 44, 45),
        ("bytes=1000-", 1000, size),
        ("bytes=-50", size - 50, size),
        ("bytes=-99999999", 0, size),
        (f"bytes=10-{size + 500}", 10, size),
        (f"bytes={size - 1}-", size - 1, size),
        ("bytes=300000-560000", 300_000, 560_001),  # more than one streamed chunk
        ("bytes=5-6,", 5, 7),  # an empty list element (RFC 9110 5.6.1)
        ("Bytes= 5-6", 5, 7),
    ]:
        response = await pb.get(url, Range=header)
        assert response.status_code == 206, header
        assert response.content == whole[start:end], header
        assert response.headers["content-range"] == f"bytes {start}-{end - 1}/{size}", header
        assert response.headers["content-length"] == str(end - start), header


async def test_if_range_honours_the_range_only_for_this_recording(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id, track="agent")
    whole = await pb.get(url)
    etag = whole.headers["etag"]
    row = get_recording(pb.store, pb.h.tenant_id, session_id)
    assert row is not None and etag == f'"{row.recording_id}-agent"'
    same = await pb.get(url, Range="bytes=100-199", **{"If-Range": etag})
    assert same.status_code == 206 and same.content == whole.content[100:200]
    for other in ['"another-etag"', "Fri, 04 Dec 2026 15:00:00 GMT"]:
        changed = await pb.get(url, Range="bytes=100-199", **{"If-Range": other})
        assert changed.status_code == 200 and changed.content == whole.content


async def test_an_rsa_recording_is_422_at_playback_too_and_nothing_is_read(pb: Playback) -> None:
    session_id = await pb.recorded_call(kind="rsa")
    row = get_recording(pb.store, pb.h.tenant_id, session_id)
    assert row is not None
    token, _ = sign_playback(
        KEYRING,
        tenant_id=pb.h.tenant_id,
        session_id=session_id,
        recording_id=row.recording_id,
        track="both",
    )
    response = await pb.get(f"{pb.h.url}/v1/calls/{session_id}/recording/both.wav?token={token}")
    assert response.status_code == 422
    assert "private key" in response.json()["error"]
    assert pb.objects.gets == 0


async def test_what_is_answered_whole(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id)
    whole = await pb.expected(session_id, "both")
    for header in ["bytes=10-5", "items=0-5", "bytes=abc", "bytes=0-1,5-9", "bytes=-", "bytes="]:
        response = await pb.get(url, Range=header)
        assert response.status_code == 200, header
        assert response.content == whole, header
        assert "content-range" not in response.headers, header


async def test_an_unsatisfiable_range_is_416(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id)
    size = len(await pb.expected(session_id, "both"))
    for header in [
        f"bytes={size}-",
        f"bytes={size + 10}-{size + 20}",
        "bytes=-0",
        f"bytes={size}-,{size + 1}-",
    ]:
        response = await pb.get(url, Range=header)
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{size}", header
        assert "error" in response.json()


# -- delete


async def test_delete_shreds_the_key_first_then_the_object(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    key = object_key(pb.h.tenant_id, session_id)
    pb.objects.failing_deletes = 1
    response = await pb.delete(session_id)
    assert response.status_code == 503 and response.headers["retry-after"]
    row = get_recording(pb.store, pb.h.tenant_id, session_id)
    assert row is not None and (row.status, row.wrapped_key) == ("deleted", None)
    assert pb.objects.inner.get(key)  # the object is still there, its key is not
    assert (await pb.delete(session_id)).status_code == 204  # the retry
    with pytest.raises(RecordingMissing):
        pb.objects.inner.get(key)
    assert (await pb.delete(session_id)).status_code == 204  # and again: idempotent
    assert pb.objects.deletes == [key, key, key]


async def test_delete_needs_the_tenants_own_key_and_call(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    _, bravo_key = await pb.other_tenant()
    assert (await pb.delete(session_id, key="sb_wrong")).status_code == 401
    assert (await pb.delete(session_id, key=bravo_key)).status_code == 404
    assert (await pb.delete(uuid4())).status_code == 404
    assert (await pb.delete("nope")).status_code == 400
    assert pb.objects.deletes == []
    row = get_recording(pb.store, pb.h.tenant_id, session_id)
    assert row is not None and row.status == "complete" and row.wrapped_key is not None


async def test_a_missing_object_or_an_away_store_is_said_so(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id, track="caller")
    pb.objects.inner.delete(object_key(pb.h.tenant_id, session_id))
    response = await pb.get(url)
    assert response.status_code == 404 and "missing" in response.json()["error"]

    class AwayStore(CountingStore):
        def get(self, key: str) -> bytes:
            raise RecordingStoreError("connection refused")

    pb.h.rt.recording_access = RecordingAccess(
        AwayStore(pb.objects.inner), keyring_opener(RECORDING_KEYS)
    )
    response = await pb.get(url)
    assert response.status_code == 503 and response.headers["retry-after"]


# -- decrypting on the fly


def _use_keyring(pb: Playback, keyring: RecordingKeyring) -> None:
    pb.h.rt.recording_access = RecordingAccess(pb.objects, keyring_opener(keyring))


async def test_a_recording_of_k1_plays_after_k2_comes_first(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id, track="caller")
    _use_keyring(pb, RecordingKeyring([("k2", b"\x22" * 32), ("k1", b"\x11" * 32)]))
    response = await pb.get(url)
    assert response.status_code == 200
    assert np.array_equal(wav_samples(response.content, 1)[:, 0], tracks(session_id)[0])
    _use_keyring(pb, RecordingKeyring([("k2", b"\x22" * 32)]))  # k1 retired too early
    response = await pb.get(url)
    assert response.status_code == 422
    assert "no recording key 'k1'" in response.json()["error"]


async def test_an_altered_object_is_refused_with_the_reason(pb: Playback) -> None:
    session_id = await pb.recorded_call()
    url = await pb.url(session_id, track="caller")
    path = pb.objects.inner.root / object_key(pb.h.tenant_id, session_id)
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0x01
    path.write_bytes(bytes(blob))
    response = await pb.get(url)
    assert response.status_code == 422
    assert "cannot be played" in response.json()["error"]
    assert "altered" in response.json()["error"]


async def test_an_object_of_another_call_is_refused(pb: Playback) -> None:
    first = await pb.recorded_call()
    second = await pb.recorded_call()
    url = await pb.url(first)
    root = pb.objects.inner.root
    (root / object_key(pb.h.tenant_id, first)).write_bytes(
        (root / object_key(pb.h.tenant_id, second)).read_bytes()
    )
    response = await pb.get(url)
    assert response.status_code == 422  # (its key would not open it either)


async def test_a_truncated_recording_plays_what_verifies(pb: Playback) -> None:
    session_id = await pb.recorded_call(finish=None)
    path = pb.objects.inner.root / object_key(pb.h.tenant_id, session_id)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 30_000])  # the last segment cut short
    await trio.to_thread.run_sync(
        lambda: finish_recording(
            pb.store,
            pb.h.tenant_id,
            session_id,
            status="truncated",
            size_bytes=len(blob) - 30_000,
            duration_ms=10_000,
        )
    )
    response = await pb.get(await pb.url(session_id, track="caller"))
    assert response.status_code == 200
    played = wav_samples(response.content, 1)[:, 0]
    caller = tracks(session_id)[0]
    assert 0 < len(played) < len(caller)
    assert np.array_equal(played, caller[: len(played)])
