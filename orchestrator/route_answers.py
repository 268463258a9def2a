"""What the call routes share: an answer that ends a request, the path's session id, the
API key's tenant (the recording routes, :mod:`.recording_routes`, and the timeline
routes, :mod:`.timeline_routes`)."""

from __future__ import annotations

import uuid
from typing import Final

import structlog
from quart import jsonify

from .runtime import Runtime
from .sessions import tenant_for_request

__all__ = ["API_KEY_REQUIRED", "Refused", "session_uuid", "tenant_by_key"]

log = structlog.get_logger("switchboard.routes")

API_KEY_REQUIRED: Final = "a valid tenant API key is required (Authorization: Bearer)"


class Refused(Exception):  # noqa: N818 - an answer that ends the request, not an error
    """Raised to end a request with ``status``, ``{"error": message}`` and ``headers``;
    the route returns :attr:`answer`."""

    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(message)
        self.answer = jsonify({"error": message}), status, headers


def session_uuid(session_id: str) -> uuid.UUID:
    """The path's session id.

    Raises:
        Refused: 400, it is not a UUID.
    """
    try:
        return uuid.UUID(session_id)
    except ValueError:
        raise Refused(400, "session_id must be a UUID") from None


async def tenant_by_key(rt: Runtime, door: str) -> uuid.UUID:
    """The tenant of the request's API key (``Authorization: Bearer``).

    Raises:
        Refused: 401, no key or an unknown one (logged as ``auth.rejected`` at ``door``).
    """
    tenant_id = await tenant_for_request(rt)
    if tenant_id is None:
        log.warning("auth.rejected", door=door, reason="missing or unknown API key")
        raise Refused(401, API_KEY_REQUIRED)
    return tenant_id
