"""The timeline routes: a call's timeline as a page (or JSON), by API key or a signed link.

``GET /v1/calls/{session_id}/timeline`` with ``Authorization: Bearer <tenant API key>``,
or ``?token=<signed link token>`` (no key): the timeline page
(:mod:`.replay.timeline_page`: both tracks as waveforms, the events above them, dead
air shaded, playback of any span), or with ``Accept: application/json`` (preferred
over HTML) or ``?format=json`` the timeline JSON (:func:`~.replay.timeline.timeline_json`
plus ``"audio_url"``). The events are the call's ``call_events`` read under the
tenant (row-level security); the waveforms and dead air come from the recording when
the call was recorded and the server can play it, and the page's audio is a signed
playback URL of the recording's ``both`` track (:mod:`.recording_urls`), valid as long
as the link (an hour with an API key). Without a playable recording the page says why
and draws who spoke when from the events.

``POST /v1/calls/{session_id}/timeline/url`` (API key), JSON body optional
``{"expires_in": seconds}`` (1 to 86400, default 3600): ``200 {"url", "expires_at"}``,
a link that opens the page without a key (:mod:`.timeline_urls`).

Answers: ``401`` without a valid key (and no token), ``403`` for a link token that is
malformed, altered, expired or made for another call, ``404`` for a call the tenant
does not have (another tenant's included), ``400`` for a session id that is not a UUID
or a bad body, ``503`` with ``Retry-After`` while PostgreSQL is away (the app's
handler). Errors are JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import time
import uuid
from functools import partial
from typing import Any, Final

import structlog
import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from .recording_playback import PlaybackUnavailable
from .recording_routes import access_of
from .recording_rows import get_recording
from .recording_store import RecordingMissing, RecordingStoreError
from .recording_urls import MAX_TTL_S as PLAYBACK_MAX_TTL_S
from .recording_urls import PlaybackRefused, playback_path, sign_playback
from .replay.levels import Levels, levels_of_wav
from .replay.timeline import build_timeline, timeline_json
from .replay.timeline_page import page_csp, peak_factor, peaks_of, render_page
from .route_answers import Refused, session_uuid, tenant_by_key
from .runtime import Runtime
from .store import Store
from .timeline_urls import DEFAULT_TTL_S, MAX_TTL_S, sign_timeline, timeline_path, verify_timeline

__all__ = ["register"]

log = structlog.get_logger("switchboard.timeline")

_MIN_AUDIO_TTL_S: Final = 60


def register(app: QuartTrio, rt: Runtime) -> None:
    """Add the timeline routes to the Quart ``app`` of ``rt``."""

    @app.get("/v1/calls/<session_id>/timeline")
    async def timeline(session_id: str) -> Any:
        try:
            return await _timeline(rt, session_id)
        except Refused as refused:
            return refused.answer

    @app.post("/v1/calls/<session_id>/timeline/url")
    async def timeline_url(session_id: str) -> Any:
        try:
            return await _make_url(rt, session_id)
        except Refused as refused:
            return refused.answer


async def _make_url(rt: Runtime, session_id: str) -> Any:
    tenant_id = await tenant_by_key(rt, "timeline")
    sid = session_uuid(session_id)
    ttl_s = _expires_in(await request.get_data(as_text=False))
    events = await trio.to_thread.run_sync(partial(rt.store.read_events, tenant_id, sid))
    if not events:
        raise Refused(404, "no such call")
    token, claims = sign_timeline(
        rt.keyring, tenant_id=tenant_id, session_id=sid, ttl_s=ttl_s,
        issuer=rt.settings.token_issuer,
    )  # fmt: skip
    log.info("timeline.url", session_id=str(sid), expires_in=ttl_s)
    url = rt.settings.base_url + timeline_path(sid, token)
    return jsonify({"url": url, "expires_at": claims.expires_at})


def _expires_in(body: str | bytes) -> int:
    if not body.strip():
        return DEFAULT_TTL_S
    try:
        data = json.loads(body)
    except ValueError:
        raise Refused(400, "the body must be JSON") from None
    if not isinstance(data, dict) or set(data) - {"expires_in"}:
        raise Refused(400, 'the body is {"expires_in": seconds} or empty')
    ttl = data.get("expires_in", DEFAULT_TTL_S)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= MAX_TTL_S:
        raise Refused(400, f"expires_in must be 1 to {MAX_TTL_S} seconds (24 hours)")
    return ttl


async def _timeline(rt: Runtime, session_id: str) -> Any:
    token = request.args.get("token")
    if token is not None:
        try:
            claims = verify_timeline(
                rt.keyring, token, session_id=session_id, issuer=rt.settings.token_issuer
            )
        except PlaybackRefused as exc:
            log.warning("auth.rejected", door="timeline link", reason=exc.reason)
            raise Refused(403, exc.reason) from None
        tenant_id, sid = claims.tenant_id, claims.session_id
        audio_ttl = claims.expires_at - int(time.time())
    else:
        tenant_id = await tenant_by_key(rt, "timeline")
        sid = session_uuid(session_id)
        audio_ttl = DEFAULT_TTL_S
    events, door = await trio.to_thread.run_sync(partial(_call_of, rt.store, tenant_id, sid))
    if not events:
        raise Refused(404, "no such call")
    levels, audio_url, note = await _audio(rt, tenant_id, sid, audio_ttl)
    timeline = build_timeline(events, levels=levels, session_id=str(sid), door=door)
    if request.args.get("format") == "json" or _wants_json():
        return jsonify({**timeline_json(timeline), "audio_url": audio_url})
    peaks = peaks_of(levels) if levels is not None else {}
    peak_ms = levels.bin_ms * peak_factor(levels.bins) if levels is not None else 20.0
    title = f"Call {sid} ({timeline.agent or 'agent'})"
    page = render_page(
        timeline, peaks=peaks, peak_ms=peak_ms, audio_url=audio_url, title=title, audio_note=note
    )
    response = Response(page, status=200, mimetype="text/html")
    response.headers.update(
        {
            "Content-Security-Policy": page_csp(audio_url),
            "Cache-Control": "private, no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        }
    )
    return response


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _call_of(store: Store, tenant_id: uuid.UUID, sid: uuid.UUID) -> tuple[list[Any], str | None]:
    """The call's events and its door (``voice_sessions.transport``), under the tenant."""
    events = store.read_events(tenant_id, sid)
    with store.db.tenant(tenant_id) as cur:
        cur.execute("SELECT transport FROM voice_sessions WHERE id = %s", (sid,))
        row = cur.fetchone()
    return events, (str(row[0]) if row and row[0] is not None else None)


async def _audio(
    rt: Runtime, tenant_id: uuid.UUID, sid: uuid.UUID, ttl_s: int
) -> tuple[Levels | None, str | None, str | None]:
    """The recording's levels and a signed URL of its ``both`` track, or why there is none."""
    row = await trio.to_thread.run_sync(partial(get_recording, rt.store, tenant_id, sid))
    if row is None:
        return None, None, "No audio: this call was not recorded."
    if row.status == "deleted":
        return None, None, "No audio: the recording of this call was deleted."
    if not row.playable:
        return None, None, "No audio yet: the call is still being recorded."
    access = access_of(rt)
    try:
        source = await trio.to_thread.run_sync(access.open, row, "both")
        levels = await trio.to_thread.run_sync(levels_of_wav, source)
    except PlaybackUnavailable as exc:
        return None, None, f"No audio: {exc.message}"
    except RecordingMissing:
        return None, None, "No audio: the recording's audio is missing from the store."
    except (RecordingStoreError, ValueError) as exc:
        log.warning("timeline: recording unavailable", session_id=str(sid), error=str(exc)[:300])
        return None, None, "No audio: the recording cannot be read now; reload to retry."
    token, _ = sign_playback(
        rt.keyring,
        tenant_id=tenant_id,
        session_id=sid,
        recording_id=row.recording_id,
        track="both",
        ttl_s=min(max(ttl_s, _MIN_AUDIO_TTL_S), PLAYBACK_MAX_TTL_S),
        issuer=rt.settings.token_issuer,
    )
    return levels, rt.settings.base_url + playback_path(sid, "both", token), None
