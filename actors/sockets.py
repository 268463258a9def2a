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
