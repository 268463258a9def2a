"""The recording routes: make a signed playback URL, play it, delete the recording.

``POST /v1/calls/{session_id}/recording/url`` (``Authorization: Bearer <tenant API
key>``), JSON body (optional)::

    {"track": "both",       "caller", "agent" or "both" (stereo: caller left); default both
     "expires_in": 900}     seconds, 1 to 86400; default 900

answers ``200 {"url": "...", "expires_at": <unix seconds>, "track": "both"}``;
``404`` when the tenant has no recording of that call, ``410`` when it was
deleted, ``409`` while the call is still being recorded, ``422`` when it is
encrypted for the tenant's RSA key (the server cannot play it), ``400`` for a
malformed body.

``GET /v1/calls/{session_id}/recording/{track}.wav?token=...`` (the URL; no API
key): ``audio/wav``, ``Accept-Ranges: bytes``. A ``Range`` header with one range
(``bytes=a-b``, ``a-``, ``-n``) gets ``206`` and ``Content-Range``; several ranges
get the whole file, ``200``; none satisfiable, ``416`` with ``Content-Range:
bytes */size`` (see :mod:`.http_range`). ``ETag`` is ``"<recording id>-<track>"``;
``If-Range`` with another value (or a date) gets the whole file. A token that is malformed, altered,
expired, made for another session or track, or for a recording since deleted
(or another tenant's): ``403``, decided before the recording store is touched.
``422`` for a recording the server cannot decrypt; ``404`` when its object is
gone from the store; ``503`` with ``Retry-After`` while the store or PostgreSQL
is away.

``DELETE /v1/calls/{session_id}/recording`` (tenant API key): crypto-shred. The
row's wrapped data key is destroyed (committed) first, then the object is
deleted; ``204``, also when repeated. ``404`` when the tenant has no recording
of that call; ``503`` (retry: it is idempotent) when the store failed to delete
the object, whose key is gone already.

Errors are JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Final, final

import structlog
import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from .http_range import RangeNotSatisfiable, requested_range
from .outage import RETRY_AFTER_DATABASE_S
from .recording_playback import RSA_MESSAGE, PlaybackUnavailable, RecordingAccess, WavSource
from .recording_rows import RecordingRow, get_recording, shred_recording
from .recording_store import RecordingMissing, RecordingStoreError, open_store
from .recording_urls import (
    DEFAULT_TTL_S,
    MAX_TTL_S,
    TRACKS,
    PlaybackRefused,
    playback_path,
    sign_playback,
    verify_playback,
)
from .route_answers import Refused, session_uuid, tenant_by_key
from .runtime import Runtime

__all__ = ["CHUNK_BYTES", "UrlRequest", "register"]

log = structlog.get_logger("switchboard.recordings")

CHUNK_BYTES: Final = 256 * 1024
"""A streamed answer is rendered and sent this many bytes at a time."""


class UrlRequestError(ValueError):
    """The body is not a playback URL request; the message says why."""


@final
@dataclass(frozen=True, slots=True)
class UrlRequest:
    """A parsed ``POST .../recording/url`` body: the track, and the URL's life in seconds."""

    track: str = "both"
    expires_in: int = DEFAULT_TTL_S

    @classmethod
    def parse(cls, body: Any) -> UrlRequest:
        """Raises UrlRequestError for anything but the documented shape (None: defaults)."""
        if body is None:
            return cls()
        if not isinstance(body, dict):
            raise UrlRequestError("the body must be a JSON object")
        unknown = sorted(set(body) - {"track", "expires_in"})
        if unknown:
            raise UrlRequestError(
                f"unknown field(s): {', '.join(repr(k[:40]) for k in unknown[:5])}"
            )
        track = body.get("track", "both")
        if track not in TRACKS:
            raise UrlRequestError(f"track must be one of {', '.join(TRACKS)}")
        expires_in = body.get("expires_in", DEFAULT_TTL_S)
        if isinstance(expires_in, bool) or not isinstance(expires_in, int):
            raise UrlRequestError("expires_in must be a whole number of seconds")
        if not 1 <= expires_in <= MAX_TTL_S:
            raise UrlRequestError(f"expires_in must be 1 to {MAX_TTL_S} seconds (24 hours)")
        return cls(track, expires_in)


def access_of(rt: Runtime) -> RecordingAccess:
    """The runtime's :class:`RecordingAccess`, made on first use from its settings."""
    if rt.recording_access is None:
        from .recording_render import keyring_opener  # the codecs load only when needed

        opener = keyring_opener(rt.settings.recording_keyring())
        rt.recording_access = RecordingAccess(open_store(rt.settings), opener)
    return rt.recording_access


def register(app: QuartTrio, rt: Runtime) -> None:
    """Add the recording routes to the Quart ``app`` of ``rt``."""

    @app.post("/v1/calls/<session_id>/recording/url")
    async def recording_url(session_id: str) -> Any:
        try:
            return await _make_url(rt, session_id)
        except Refused as refused:
            return refused.answer

    @app.get("/v1/calls/<session_id>/recording/<name>")
    async def recording_play(session_id: str, name: str) -> Any:
        return await _play(rt, session_id, name)

    @app.delete("/v1/calls/<session_id>/recording")
    async def recording_delete(session_id: str) -> Any:
        try:
            return await _delete(rt, session_id)
        except Refused as refused:
            return refused.answer


def _error(status: int, message: str, **headers: str) -> Any:
    return Refused(status, message, **headers).answer


async def _tenant_and_session(rt: Runtime, session_id: str) -> tuple[uuid.UUID, uuid.UUID]:
    """The API key's tenant and the path's session id (:mod:`.route_answers`)."""
    return await tenant_by_key(rt, "recordings"), session_uuid(session_id)


async def _json_body() -> Any:
    """The request's JSON, or None for an empty body.

    Raises:
        Refused: 400, the body is not JSON.
    """
    data = await request.get_data()
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except ValueError:
        raise Refused(400, "the body must be JSON") from None


async def _make_url(rt: Runtime, session_id: str) -> Any:
    tenant_id, sid = await _tenant_and_session(rt, session_id)
    try:
        req = UrlRequest.parse(await _json_body())
    except UrlRequestError as exc:
        raise Refused(400, str(exc)) from None
    row = await trio.to_thread.run_sync(get_recording, rt.store, tenant_id, sid)
    if row is None:
        raise Refused(404, "no recording of this call")
    if row.status == "deleted":
        raise Refused(410, "the recording of this call was deleted")
    if row.status == "recording":
        raise Refused(409, "the call is still being recorded; ask again when it has ended")
    if row.key_kind != "keyring":
        raise Refused(422, RSA_MESSAGE)
    token, claims = sign_playback(
        rt.keyring,
        tenant_id=tenant_id,
        session_id=sid,
        recording_id=row.recording_id,
        track=req.track,
        ttl_s=req.expires_in,
        issuer=rt.settings.token_issuer,
    )
    url = rt.settings.base_url + playback_path(sid, req.track, token)
    log.info("recording.url", session_id=str(sid), track=req.track, expires_in=req.expires_in)
    return jsonify({"url": url, "expires_at": claims.expires_at, "track": req.track})


async def _play(rt: Runtime, session_id: str, name: str) -> Any:
    track = name.removesuffix(".wav") if name.endswith(".wav") else ""
    try:
        claims = verify_playback(
            rt.keyring,
            request.args.get("token", ""),
            session_id=session_id,
            track=track,
            issuer=rt.settings.token_issuer,
        )
    except PlaybackRefused as exc:
        log.warning("auth.rejected", door="recording playback", reason=exc.reason)
        return _error(403, exc.reason)
    row = await trio.to_thread.run_sync(
        get_recording, rt.store, claims.tenant_id, claims.session_id
    )
    refusal = _row_refusal(row, claims.recording_id)
    if refusal is not None:
        log.warning("auth.rejected", door="recording playback", reason=refusal)
        return _error(403, refusal)
    assert row is not None
    access = access_of(rt)
    try:
        source = await trio.to_thread.run_sync(access.open, row, track)
    except PlaybackUnavailable as exc:
        return _error(exc.status, exc.message)
    except RecordingMissing:
        log.error("recording object missing", session_id=session_id, key=row.object_key)
        return _error(404, "the recording's audio is missing from the store")
    except RecordingStoreError as exc:
        log.warning("recording store unavailable", error=str(exc)[:300])
        return _error(503, "the recording store is unavailable", **_retry())
    return _wav_response(source, session_id, track, etag=f'"{row.recording_id}-{track}"')


def _row_refusal(row: RecordingRow | None, recording_id: uuid.UUID) -> str | None:
    """Why a valid token still may not play, or None."""
    if row is None or row.recording_id != recording_id:
        return "no such recording"
    if row.status == "deleted":
        return "the recording was deleted"
    if not row.playable:
        return "the recording is not finished"
    return None


def _wav_response(source: WavSource, session_id: str, track: str, *, etag: str) -> Any:
    """The WAV, whole or the one range asked for. ``etag``: a strong validator (a finished
    recording's track never changes); an ``If-Range`` naming another one gets the whole
    file (RFC 9110 section 13.1.5), a date there too (the server keeps no modification time)."""
    size = source.size
    range_header = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        range_header = None
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-store",
        "Referrer-Policy": "no-referrer",
        "Content-Disposition": f'inline; filename="{session_id}-{track}.wav"',
    }
    try:
        wanted = requested_range(range_header, size)
    except RangeNotSatisfiable as exc:
        return _error(416, str(exc), **headers, **{"Content-Range": exc.content_range})
    start, end, status = 0, size, 200
    if wanted is not None:
        start, end, status = wanted.start, wanted.end, 206
        headers["Content-Range"] = wanted.content_range
    headers["Content-Length"] = str(end - start)
    response = Response(_chunks(source, start, end), status=status, mimetype="audio/wav")
    response.headers.update(headers)
    response.timeout = None  # a long recording streams for as long as the client reads
    return response


async def _chunks(source: WavSource, start: int, end: int) -> AsyncIterator[bytes]:
    """Bytes ``start`` to ``end`` of ``source``, rendered in a thread ``CHUNK_BYTES`` at a time."""
    at = start
    while at < end:
        upto = min(end, at + CHUNK_BYTES)
        yield await trio.to_thread.run_sync(partial(source.read, at, upto))
        at = upto


async def _delete(rt: Runtime, session_id: str) -> Any:
    tenant_id, sid = await _tenant_and_session(rt, session_id)
    row = await trio.to_thread.run_sync(shred_recording, rt.store, tenant_id, sid)
    if row is None:
        return _error(404, "no recording of this call")
    access = access_of(rt)
    access.forget(row.recording_id)
    try:
        await trio.to_thread.run_sync(access.store.delete, row.object_key)
    except RecordingStoreError as exc:
        log.warning(
            "recording shredded, object not deleted yet", session_id=session_id, error=str(exc)
        )
        return _error(503, "the key is destroyed; deleting the audio failed, retry", **_retry())
    log.info("recording.deleted", session_id=session_id)
    return Response(b"", status=204)


def _retry() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_DATABASE_S)}
