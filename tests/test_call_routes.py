"""``GET /v1/calls`` and ``GET /v1/calls/{id}``: a tenant lists its calls and reads one,
against a real server on loopback and the session's PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import psycopg
import pytest
import trio

from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.server import serve
from switchboard.orchestrator.store import Store

AGENT = "name: {name}\ntenant: {tenant}\ngreeting: Hello.\nintents: []\n"


@dataclass
class Served:
    url: str
    keys: dict[str, str]  # tenant -> API key
    calls: dict[str, list[UUID]]  # tenant -> session ids, oldest first

    async def get(self, path: str, tenant: str | None, **params: Any) -> httpx.Response:
        headers = {} if tenant is None else {"Authorization": f"Bearer {self.keys[tenant]}"}
        async with httpx.AsyncClient(base_url=self.url) as client:
            return await client.get(path, headers=headers, params=params)


@pytest.fixture
async def served(database_url: str, tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Served]:
    settings = Settings(
        host="127.0.0.1", port=0, data_dir=tmp_path, database_url=database_url, log_format="console"
    )
    urls = await nursery.start(serve, settings)
    keys: dict[str, str] = {}
    calls: dict[str, list[UUID]] = {}
    with Database(database_url) as db:
        store = Store(db)
        for tenant, agents in (("bakery", ("front", "orders")), ("florist", ("desk",))):
            for name in agents:
                agent_id = store.apply_agent(
                    parse_agent_yaml(AGENT.format(name=name, tenant=tenant))
                )
                tenant_id = store.ensure_tenant(tenant)
                for n in range(3):
                    sid = store.create_session(
                        tenant_id, agent_id, transport="twilio", call_sid=f"CA{uuid4().hex}"
                    )
                    calls.setdefault(tenant, []).append(sid)
                    if n < 2:  # the third is still going
                        start = datetime.now(UTC)
                        store.finish_session(
                            tenant_id,
                            sid,
                            end_reason="caller hung up",
                            turns=n + 1,
                            started_at=start,
                            ended_at=start + timedelta(seconds=30),
                            summary={"outcome": f"call {n}"},
                        )
            keys[tenant] = store.create_api_key(tenant_id)
    yield Served(urls[0], keys, calls)
    nursery.cancel_scope.cancel()


async def test_a_tenant_pages_through_its_calls_newest_first(served: Served) -> None:
    mine = [str(s) for s in reversed(served.calls["bakery"])]  # newest first
    first = await served.get("/v1/calls", "bakery", limit=4)
    assert first.status_code == 200
    page = first.json()
    assert [c["session_id"] for c in page["calls"]] == mine[:4]
    last = page["calls"][-1]
    assert page["next_before"] == f"{last['created_at']}~{last['session_id']}"
    second = (await served.get("/v1/calls", "bakery", limit=4, before=page["next_before"])).json()
    assert [c["session_id"] for c in second["calls"]] == mine[4:]
    assert second["next_before"] is None  # the last page
    orders = (await served.get("/v1/calls", "bakery", agent="orders")).json()["calls"]
    assert {c["agent"]["name"] for c in orders} == {"orders"} and len(orders) == 3


async def test_calls_made_in_the_same_microsecond_are_neither_lost_nor_repeated_across_pages(
    served: Served, database_url: str
) -> None:
    same = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE voice_sessions SET created_at = %s WHERE id = ANY(%s)",
            (same, served.calls["florist"]),
        )
    seen: list[str] = []
    before: str | None = None
    for _ in range(4):
        params: dict[str, Any] = {"limit": 1} | ({"before": before} if before else {})
        page = (await served.get("/v1/calls", "florist", **params)).json()
        seen += [c["session_id"] for c in page["calls"]]
        before = page["next_before"]
        if before is None:
            break
    assert sorted(seen) == sorted(str(s) for s in served.calls["florist"])
    assert len(seen) == len(set(seen)) == 3
    every = (await served.get("/v1/calls", "florist", before=same.isoformat())).json()
    assert every["calls"] == []  # a bare time: the calls made strictly before it


async def test_a_call_reads_with_its_summary_and_another_tenants_is_not_found(
    served: Served,
) -> None:
    ended, going = served.calls["bakery"][0], served.calls["bakery"][2]
    call = (await served.get(f"/v1/calls/{ended}", "bakery")).json()
    assert (call["door"], call["status"], call["turns"], call["duration_ms"]) == (
        "twilio",
        "ended",
        1,
        30_000,
    )
    # What the end of the call wrote stays; the post-call analysis adds to it meanwhile.
    assert call["summary"]["outcome"] == "call 0" and call["end_reason"] == "caller hung up"
    still = (await served.get(f"/v1/calls/{going}", "bakery")).json()
    assert still["ended_at"] is None and still["summary"] is None and still["turns"] is None
    theirs = served.calls["florist"][0]
    assert (await served.get(f"/v1/calls/{theirs}", "bakery")).status_code == 404
    listed = (await served.get("/v1/calls", "florist")).json()["calls"]
    assert {c["session_id"] for c in listed} == {str(s) for s in served.calls["florist"]}


@pytest.mark.parametrize(
    ("path", "params", "status", "error"),
    [
        ("/v1/calls", {"limit": "0"}, 400, "limit must be a whole number from 1 to 200"),
        ("/v1/calls", {"limit": "many"}, 400, "limit must be a whole number from 1 to 200"),
        ("/v1/calls", {"before": "yesterday"}, 400, "before must be an ISO 8601 time"),
        ("/v1/calls", {"before": "2026-01-01T00:00:00"}, 400, "before must carry its time zone"),
        ("/v1/calls", {"before": "2026-01-01T00:00:00+00:00~nope"}, 400, "before must be an ISO"),
        ("/v1/calls/not-a-uuid", {}, 400, "session_id must be a UUID"),
        ("/v1/calls/5d1c9a52-0b7e-4d43-9f43-6a1f9f6d2e10", {}, 404, "no such call"),
    ],
)
async def test_bad_requests_get_a_clear_error(
    served: Served, path: str, params: dict[str, str], status: int, error: str
) -> None:
    answer = await served.get(path, "bakery", **params)
    assert answer.status_code == status
    assert answer.json()["error"].startswith(error)


async def test_without_an_api_key_nothing_is_listed(served: Served) -> None:
    for path in ("/v1/calls", f"/v1/calls/{served.calls['bakery'][0]}"):
        answer = await served.get(path, None)
        assert answer.status_code == 401
