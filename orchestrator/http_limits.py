"""The HTTP request body limit, and a connection that stays usable after a 413.

Every HTTP body the runtime takes is small (a Twilio webhook's form, a
session request): one over :data:`MAX_BODY_BYTES` is answered ``413`` with a
JSON error (RFC 9110 section 15.5.14). How the connection fares:

- a body that declares its length (``Content-Length``) up to
  :data:`DRAIN_MAX_BYTES` is read and thrown away first (within
  :data:`DRAIN_TIMEOUT_S`), so the client reads the 413 after its upload and
  may send its next request on the same keep-alive connection;
- a larger one (or one that does not finish in time), and a chunked body
  that runs over the limit (Quart's own check), is answered at once with
  ``Connection: close``, and the connection is closed.

:func:`shielded` guards Quart's sends: quart-trio cancels a request's tasks as
soon as the client's side ends (``http.disconnect``), and hypercorn delivers
that disconnect from inside the last ``send`` of an answer given before the
body was read; the cancel then fell in the middle of hypercorn closing the
connection, which stayed open and never answered another request (issue 11).
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping, Sequence
from typing import Any, Final

import structlog
import trio

from .asgi_ws import Receive, Scope, Send

log = structlog.get_logger("switchboard.http")

MAX_BODY_BYTES: Final = 1024 * 1024
DRAIN_MAX_BYTES: Final = 16 * 1024 * 1024
DRAIN_TIMEOUT_S: Final = 5.0


def too_large_body() -> dict[str, str]:
    """The 413's JSON body."""
    return {"error": f"the request body is over {MAX_BODY_BYTES} bytes"}


def declared_length(scope: Scope) -> int | None:
    """The request's ``Content-Length``, or None (absent, or not a number)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def refuse_too_large(
    scope: Scope, receive: Receive, send: Send, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Answer 413 to a request whose declared body is over :data:`MAX_BODY_BYTES`,
    reading the body first when it is small enough to (see the module docstring)."""
    length = declared_length(scope) or 0
    drained = length <= DRAIN_MAX_BYTES and await _drain(receive)
    log.warning(
        "request body too large",
        path=scope.get("path"),
        content_length=length,
        limit_bytes=MAX_BODY_BYTES,
        keep_alive=drained,
    )
    body = json.dumps(too_large_body()).encode()
    answer = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    if not drained:
        answer.append((b"connection", b"close"))
    with trio.CancelScope(shield=True):
        await send({"type": "http.response.start", "status": 413, "headers": answer})
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def _drain(receive: Receive) -> bool:
    """Read the request body to its end and drop it; False if it did not end in time."""
    with trio.move_on_after(DRAIN_TIMEOUT_S):
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False  # http.disconnect: the client is gone
            if not message.get("more_body", False):
                return True
    return False


def shielded(send: Send) -> Send:
    """``send`` shielded from cancellation (see the module docstring)."""

    async def shielded_send(message: MutableMapping[str, Any]) -> None:
        with trio.CancelScope(shield=True):
            await send(message)

    return shielded_send
