"""``GET /v1/calls`` (a tenant's calls, newest first, paged) and ``GET /v1/calls/{id}``.

Both need the tenant's API key (``Authorization: Bearer``); a call of another
tenant is 404, as an unknown one. Query of the list: ``limit`` (1-200, default
50), ``before`` (the previous page's ``next_before``: the last call's
``created_at``, ``~`` and its id; or an ISO 8601 time alone, for the calls made
before it), ``agent`` (an agent's name). The answer: ``{"calls": [...],
"next_before": the next page's cursor, or null on the last page}``. Each call:
``session_id``, ``door`` (twilio, browser, realtime), ``status``, ``agent``
(``id``, ``name``), ``call_sid``, ``from``, ``to``, ``created_at``,
``started_at``, ``ended_at``, and once ended ``duration_ms``, ``turns``,
``end_reason``, ``summary`` (:mod:`.call_rows`).
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

import trio
from quart import jsonify, request
from quart_trio import QuartTrio

from .call_rows import MAX_PAGE, get_call, list_calls
from .route_answers import Refused, session_uuid, tenant_by_key
from .runtime import Runtime

__all__ = ["register_call_routes"]


def register_call_routes(app: QuartTrio, rt: Runtime) -> None:
    """Add the two routes to ``app``."""

    @app.get("/v1/calls")
    async def calls() -> Any:
        try:
            tenant_id = await tenant_by_key(rt, "calls")
            limit, before, before_id, agent = _list_query()
        except Refused as refused:
            return refused.answer
        rows = await trio.to_thread.run_sync(
            partial(
                list_calls,
                rt.store.db,
                tenant_id,
                limit=limit,
                before=before,
                before_id=before_id,
                agent=agent,
            )
        )
        last = rows[-1] if len(rows) == limit else None
        cursor = None if last is None else f"{last['created_at']}~{last['session_id']}"
        return jsonify({"calls": rows, "next_before": cursor})

    @app.get("/v1/calls/<session_id>")
    async def call(session_id: str) -> Any:
        try:
            tenant_id = await tenant_by_key(rt, "calls")
            sid = session_uuid(session_id)
        except Refused as refused:
            return refused.answer
        row = await trio.to_thread.run_sync(get_call, rt.store.db, tenant_id, sid)
        if row is None:
            return jsonify({"error": "no such call"}), 404
        return jsonify(row)


def _list_query() -> tuple[int, datetime | None, UUID | None, str | None]:
    """``limit``, ``before`` (a time and maybe a call id) and ``agent`` from the query.

    Raises:
        Refused: 400, naming the parameter and what it takes.
    """
    args = request.args
    try:
        limit = int(args.get("limit", "50"))
    except ValueError:
        raise Refused(400, f"limit must be a whole number from 1 to {MAX_PAGE}") from None
    if not 1 <= limit <= MAX_PAGE:
        raise Refused(400, f"limit must be a whole number from 1 to {MAX_PAGE}")
    before, before_id = None, None
    if "before" in args:
        when, _, call_id = args["before"].partition("~")
        try:
            before = datetime.fromisoformat(when)
            before_id = UUID(call_id) if call_id else None
        except ValueError:
            raise Refused(400, "before must be an ISO 8601 time (a page's next_before)") from None
        if before.tzinfo is None:
            raise Refused(400, "before must carry its time zone (a page's next_before does)")
    return limit, before, before_id, args.get("agent") or None
