"""The HTTP and WebSocket application: Quart (on Trio) for HTTP, raw ASGI for calls.

Routes:

- ``POST /twilio/incoming``: Twilio's voice webhook (TwiML).
- ``WS /twilio/stream``: Twilio Media Streams.
- ``WS /v1/realtime``: OpenAI Realtime-compatible clients.
- ``GET /v1/calls/{session_id}/events``: a call's events in order
  (``Authorization: Bearer <tenant API key>``).
- ``GET /health``: the process is alive.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import structlog
import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from .asgi_ws import AsgiWebSocket, Receive, Scope, Send
from .realtime_routes import realtime_stream
from .runtime import Runtime
from .twilio_routes import incoming_call, media_stream

log = structlog.get_logger("switchboard.app")


async def tenant_from_bearer(rt: Runtime) -> UUID | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return await trio.to_thread.run_sync(rt.store.tenant_for_api_key, key.strip())


def create_app(rt: Runtime) -> Any:
    """Build the ASGI application for ``rt``."""
    app = QuartTrio("switchboard")

    @app.post("/twilio/incoming")
    async def twilio_incoming() -> Response:
        return await incoming_call(rt)

    @app.get("/v1/calls/<session_id>/events")
    async def call_events(session_id: str) -> Any:
        tenant_id = await tenant_from_bearer(rt)
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

    @app.get("/health")
    async def health() -> Any:
        return jsonify({"status": "ok"})

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            ws = AsgiWebSocket(scope, receive, send)
            if scope["path"] == "/twilio/stream":
                await media_stream(ws, rt)
            elif scope["path"] == "/v1/realtime":
                await realtime_stream(ws, rt)
            else:
                await ws.reject(404, f"no WebSocket endpoint at {scope['path']}")
            return
        await quart_asgi(scope, receive, send)

    quart_asgi: Any = app  # Quart's ASGI types are narrower than the generic scope above
    return asgi
