"""A WebSocket over raw ASGI, for the call endpoints.

Quart cancels a WebSocket handler when the client disconnects; a call must
instead see the hang-up as a message and wind down in order (its last events
written), so the call endpoints speak ASGI directly (ASGI spec, "WebSocket"
section: https://asgi.readthedocs.io/en/latest/specs/www.html). A disconnect
is ``receive() -> None``; sending after it is a no-op. A handshake can be
refused with an HTTP status before ``accept`` (the ``websocket.http.response``
extension, which hypercorn implements), or, failing that, with close code 1008.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qs

import trio

DRAIN_TIMEOUT_S = 10.0
"""The longest :meth:`AsgiWebSocket.drain` waits for the peer to finish closing."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class AsgiWebSocket:
    """One WebSocket connection; implements ``actors.sockets.MessageSocket``."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """``headers``: added to the handshake's answer, accepted or refused."""
        self.scope = scope
        self._headers = list(headers)
        self._receive = receive
        self._send = send
        self.accepted = False
        self.closed = False
        self.disconnected = False
        self.close_code: int | None = None

    @property
    def path(self) -> str:
        return str(self.scope.get("path", ""))

    @property
    def headers(self) -> Mapping[str, str]:
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope["headers"]}

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.scope.get("query_string", b"").decode("latin-1"))

    async def accept(self, subprotocol: str | None = None) -> None:
        message = await self._receive()
        if message["type"] != "websocket.connect":
            self.closed = True
            return
        await self._send(
            {"type": "websocket.accept", "subprotocol": subprotocol, "headers": self._headers}
        )
        self.accepted = True

    async def reject(self, status: int, reason: str, *, retry_after_s: int | None = None) -> None:
        """Refuse the handshake with an HTTP ``status`` and a JSON body ``{"error": reason}``
        (or close code 1008 where the server cannot answer HTTP); ``retry_after_s`` adds a
        ``Retry-After`` header (RFC 9110 section 10.2.3), as for a 503."""
        self.closed = True
        extensions = self.scope.get("extensions") or {}
        if "websocket.http.response" in extensions:
            body = json.dumps({"error": reason}).encode()
            headers = [(b"content-type", b"application/json"), *self._headers]
            if retry_after_s is not None:
                headers.append((b"retry-after", str(retry_after_s).encode()))
            await self._send(
                {
                    "type": "websocket.http.response.start",
                    "status": status,
                    "headers": headers,
                }
            )
            await self._send({"type": "websocket.http.response.body", "body": body})
        else:
            await self._send({"type": "websocket.close", "code": 1008, "reason": reason})

    async def receive(self) -> str | bytes | None:
        if self.closed:
            return None
        while True:
            message = await self._receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                return text if text is not None else (message.get("bytes") or b"")
            if kind == "websocket.disconnect":
                self.closed = self.disconnected = True
                self.close_code = message.get("code")
                return None

    async def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Once the call is over: drop what the peer still sends until it has disconnected
        (at most ``timeout_s``).

        The server hands each frame to the handler through a queue of
        ``max_app_queue_size`` messages (hypercorn: 10) and reads nothing more
        while it is full, so a peer that sent more than that after the call
        closed would never have its own close frame read: its connection
        would hang, half-closed, for as long as it stays connected.
        """
        if not self.accepted or self.disconnected:
            return
        with trio.move_on_after(timeout_s):
            while (await self._receive())["type"] != "websocket.disconnect":
                pass
            self.disconnected = True

    async def send(self, message: str) -> None:
        if self.closed:
            return
        try:
            await self._send({"type": "websocket.send", "text": message})
        except Exception:  # the connection is gone; the reader will see the hang-up
            self.closed = True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception:
            pass
