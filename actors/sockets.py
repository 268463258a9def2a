"""The one thing transports need of a WebSocket, whatever library serves it."""

from __future__ import annotations

from typing import Protocol


class MessageSocket(Protocol):
    """A message-oriented WebSocket.

    ``receive`` returns the next text (or bytes) message, or ``None`` once the
    peer has closed or the connection is gone. ``close`` is idempotent.
    """

    async def receive(self) -> str | bytes | None: ...

    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


MAX_CLOSE_REASON_BYTES = 123
"""RFC 6455 section 5.5: a control frame's payload is at most 125 bytes, 2 of them the code."""


def close_reason(text: str) -> str:
    """``text`` cut to what a close frame carries: at most 123 bytes of UTF-8, whole characters."""
    data = text.encode("utf-8")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return text
    return data[:MAX_CLOSE_REASON_BYTES].decode("utf-8", errors="ignore")
