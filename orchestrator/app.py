"""The HTTP and WebSocket application: Quart (on Trio) for HTTP, raw ASGI for calls.

Routes:

- ``POST /twilio/incoming``: Twilio's voice webhook (TwiML).
- ``WS /twilio/stream``: Twilio Media Streams.
- ``WS /v1/realtime``: OpenAI Realtime-compatible clients.
- ``GET /v1/calls/{session_id}/events``: a call's events in order
  (``Authorization: Bearer <tenant API key>``).
- ``POST /v1/sessions``: a session and its token (tenant API key).
- ``POST /v1/calls/{session_id}/recording/url``, ``GET`` on that URL,
  ``DELETE /v1/calls/{session_id}/recording``: signed playback and crypto-shred
  (:mod:`.recording_routes`).
- ``GET /v1/calls/{session_id}/timeline`` (API key or signed link), ``POST .../timeline/url``:
  the call's timeline page or JSON (:mod:`.timeline_routes`).
- ``WS /v1/voice``, ``WS /app/voice/stream/{session_id}``: browser calls (session token).
- ``GET /practice``: the practice-call page; ``POST /practice/session``: its
  session in development mode.
- ``GET``/``PUT /config``, ``POST /config/validate``, ``POST /config/reload``,
  ``GET /presets``: the runtime configuration, behind the engine's admin key
  (:mod:`.config_routes`).
- ``GET /health``: the process is alive (``{"status": "ok", "worker": n, "pid": pid}``).
- ``GET /ready``: the server takes calls (503 while draining, while full:
  no room for another call, see :mod:`.admission`, and while PostgreSQL does
  not answer a ``SELECT 1`` within :data:`READY_DATABASE_TIMEOUT_S`: every
  call starts with a database write).
- ``GET /metrics``: call and failover metrics, Prometheus text format
  (:mod:`.metrics`; the whole server's figures with several workers).

While PostgreSQL is away every route that needs it answers 503 with
``Retry-After`` and a JSON error (the call doors: see :mod:`.outage`), never
a 500.

A request body over ``MAX_BODY_BYTES`` is answered 413 (JSON); see
:mod:`.http_limits` for what becomes of its connection.

Every answer carries ``X-Switchboard-Worker: <n>``, the worker process that
gave it (0 with one process), for operators and the multi-worker tests.
"""

from __future__ import annotations

import importlib.resources
import os
from functools import cache
from typing import Any
from uuid import UUID

import structlog
import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from .asgi_ws import AsgiWebSocket, Receive, Scope, Send
from .browser_routes import STREAM_PREFIX, browser_call
from .call_routes import register_call_routes
from .config_routes import register_config_routes
from .errors import StorageError
from .http_limits import (
    MAX_BODY_BYTES,
    declared_length,
    refuse_too_large,
    shielded,
    too_large_body,
)
from .metrics import CONTENT_TYPE
from .outage import OUTAGE_REASON, RETRY_AFTER_DATABASE_S
from .realtime_routes import realtime_stream
from .recording_routes import register as register_recording_routes
from .runtime import Runtime
from .sessions import post_practice_session, post_sessions, tenant_for_request
from .timeline_routes import register as register_timeline_routes
from .twilio_routes import incoming_call, media_stream

READY_DATABASE_TIMEOUT_S = 2.0

log = structlog.get_logger("switchboard.app")

WORKER_HEADER = "X-Switchboard-Worker"


STATIC_FILES = {
    "practice.html": "text/html; charset=utf-8",
    "practice.js": "text/javascript; charset=utf-8",
    "mic-worklet.js": "text/javascript; charset=utf-8",
}


@cache
def static_file(name: str) -> bytes:
    """A file of the packaged ``orchestrator/static`` folder."""
    resource = importlib.resources.files("switchboard.orchestrator") / "static" / name
    return resource.read_bytes()


def create_app(rt: Runtime) -> Any:
    """Build the ASGI application for ``rt``."""
    app = QuartTrio("switchboard")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    worker_header = [(WORKER_HEADER.lower().encode(), str(rt.admission.worker).encode())]

    @app.post("/twilio/incoming")
    async def twilio_incoming() -> Response:
        return await incoming_call(rt)

    @app.get("/v1/calls/<session_id>/events")
    async def call_events(session_id: str) -> Any:
        tenant_id = await tenant_for_request(rt)
        if tenant_id is None:
            log.warning("auth.rejected", door="events", reason="missing or unknown API key")
            return jsonify(
                {"error": "a valid tenant API key is required (Authorization: Bearer)"}
            ), 401
        try:
            sid = UUID(session_id)
        except ValueError:
            return jsonify({"error": "session_id must be a UUID"}), 400
        events = await trio.to_thread.run_sync(rt.store.read_events, tenant_id, sid)
        if not events:
            return jsonify({"error": "no such call"}), 404
        return jsonify({"session_id": session_id, "events": events})

    register_recording_routes(app, rt)
    register_timeline_routes(app, rt)
    register_call_routes(app, rt)
    register_config_routes(app, rt)

    @app.post("/v1/sessions")
    async def sessions() -> Any:
        return await post_sessions(rt)

    @app.post("/practice/session")
    async def practice_session() -> Any:
        return await post_practice_session(rt)

    @app.get("/practice")
    async def practice() -> Response:
        return static_response("practice.html")

    @app.get("/practice/<name>")
    async def practice_asset(name: str) -> Response:
        if name not in STATIC_FILES or name == "practice.html":
            return Response("not found\n", status=404, mimetype="text/plain")
        return static_response(name)

    @app.get("/health")
    async def health() -> Any:
        return jsonify({"status": "ok", "worker": rt.admission.worker, "pid": os.getpid()})

    @app.get("/metrics")
    async def metrics() -> Any:
        body = await trio.to_thread.run_sync(rt.admission.metrics.exposition)
        return Response(body, status=200, content_type=CONTENT_TYPE)

    @app.get("/ready")
    async def ready() -> Any:
        reason = rt.admission.not_ready() or await _database_not_ready(rt)
        if reason is not None:
            return jsonify({"status": reason}), 503
        return jsonify({"status": "ready"})

    @app.errorhandler(RequestEntityTooLarge)
    async def too_large(exc: RequestEntityTooLarge) -> Any:
        # A chunked body over the limit (a declared one is refused before Quart).
        log.warning("request body too large", path=request.path, limit_bytes=MAX_BODY_BYTES)
        return jsonify(too_large_body()), 413, {"Connection": "close"}

    @app.errorhandler(StorageError)
    async def database_away(exc: StorageError) -> Any:
        # The doors answer their own refusals (see .outage); this is every other route's.
        log.warning("database unavailable", path=request.path, error=str(exc)[:300])
        headers = {"Retry-After": str(RETRY_AFTER_DATABASE_S)}
        return jsonify({"error": OUTAGE_REASON}), 503, headers

    @app.after_request
    async def add_worker_header(response: Response) -> Response:
        response.headers[WORKER_HEADER] = str(rt.admission.worker)
        return response

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            ws = AsgiWebSocket(scope, receive, send, headers=worker_header)
            path = scope["path"]
            rt.active_calls += 1
            try:
                if path == "/twilio/stream":
                    await media_stream(ws, rt)
                elif path == "/v1/realtime":
                    await realtime_stream(ws, rt)
                elif path == "/v1/voice":
                    await browser_call(ws, rt)
                elif path.startswith(STREAM_PREFIX) and "/" not in path[len(STREAM_PREFIX) :]:
                    await browser_call(ws, rt, session_id=path[len(STREAM_PREFIX) :])
                else:
                    await ws.reject(404, f"no WebSocket endpoint at {scope['path']}")
            finally:
                rt.active_calls -= 1
            await ws.drain()  # issue 11: frames sent after the close must not wedge the socket
            return
        if scope["type"] == "http" and (declared_length(scope) or 0) > MAX_BODY_BYTES:
            await refuse_too_large(scope, receive, send, worker_header)
            return
        await quart_asgi(scope, receive, shielded(send))

    def static_response(name: str) -> Response:
        response = Response(static_file(name), status=200, content_type=STATIC_FILES[name])
        response.headers["Cache-Control"] = "no-cache"
        return response

    quart_asgi: Any = app  # Quart's ASGI types are narrower than the generic scope above
    return asgi


async def _database_not_ready(rt: Runtime) -> str | None:
    """``"database unreachable"`` when PostgreSQL does not answer in time, else None."""
    with trio.move_on_after(READY_DATABASE_TIMEOUT_S):
        try:
            await trio.to_thread.run_sync(rt.store.ping, abandon_on_cancel=True)
        except StorageError as exc:
            log.warning("ready: database unreachable", error=str(exc)[:200])
            return "database unreachable"
        return None
    log.warning("ready: database did not answer", timeout_s=READY_DATABASE_TIMEOUT_S)
    return "database unreachable"
