"""Post-call hooks (issue 15, point 3): a call's end queues its work in the same
transaction; the summary and analysis land in ``call_logs.summary`` and
``GET /v1/calls/{id}``; each subscribed webhook gets the events signed per Standard
Webhooks (checked by the receiver with the ``standardwebhooks`` package); failed
deliveries back off, then go dead; the LLM analyser speaks the chat completions wire
format and falls back to the local analysis.

Real parts: the session's embedded PostgreSQL, the server (``serve``) and receivers
on loopback sockets. Backoff is driven through ``next_attempt_at``, not waited for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
import trio
from post_call_support import CALLER_LINES, ended_call, outbox_rows, wait_for
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from tool_servers import BusinessServer, start_business

from switchboard.actors.providers import Endpoints
from switchboard.actors.tools.guarded_http import GuardedHttp
from switchboard.orchestrator.analysis_llm import analyse_with_llm
from switchboard.orchestrator.config import PostCallSettings, Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.errors import ConfigError
from switchboard.orchestrator.outbox_store import (
    claim_webhooks,
    list_outbox,
    message_id,
    retry_outbox,
)
from switchboard.orchestrator.post_call import (
    PostCallMetrics,
    call_facts,
    deliver_once,
    retry_delay_s,
    run_jobs_once,
)
from switchboard.orchestrator.server import serve
from switchboard.orchestrator.store import Store
from switchboard.orchestrator.tenant_tools import set_tool_allowlist
from switchboard.orchestrator.webhook_subscriptions import add_subscription

FAST = PostCallSettings(poll_s=0.05, retry_base_s=0.05, retry_cap_s=0.2, timeout_s=5.0)


def subscribe(db: Database, tenant: str, store: Store, url: str, *events: str) -> tuple[UUID, str]:
    """Subscribe ``url`` for ``tenant`` (made if new); loopback allowed for its webhooks."""
    tenant_id = store.ensure_tenant(tenant)
    set_tool_allowlist(db, tenant_id, ["127.0.0.1"])
    return add_subscription(db, tenant_id, url, events or ("call.ended", "call.analyzed"))


def test_a_calls_end_queues_its_job_and_call_ended_webhooks_once(store: Store) -> None:
    db = store.db
    ended_only, _ = subscribe(db, "bakery", store, "http://127.0.0.1:9/a", "call.ended")
    subscribe(db, "bakery", store, "http://127.0.0.1:9/b", "call.analyzed")
    subscribe(db, "florist", store, "http://127.0.0.1:9/c")  # another tenant's
    tenant_id, session_id = ended_call(store)
    rows = outbox_rows(db, tenant_id)
    assert [(r["subscription_id"], r["event_type"], r["state"]) for r in rows] == [
        (ended_only, "call.ended", "pending")
    ]
    assert rows[0]["id"] == message_id(ended_only, session_id, "call.ended")
    body = rows[0]["payload"]
    assert body["type"] == "call.ended" and body["data"]["call_id"] == str(session_id)
    assert body["data"]["end_reason"] == "caller hung up" and body["data"]["duration_ms"] == 30000
    with db.tenant(tenant_id) as cur:
        cur.execute("SELECT state FROM post_call_jobs WHERE session_id = %s", (session_id,))
        assert cur.fetchall() == [("pending",)]
    # The end recorded again (the spool drainer, recovery): nothing more is queued.
    start = store.read_turns(tenant_id, session_id)[0].ts
    store.finish_session(
        tenant_id, session_id, end_reason="x", turns=2, started_at=start, ended_at=start
    )
    assert len(outbox_rows(db, tenant_id)) == 1


@pytest.fixture
async def receiver(nursery: trio.Nursery) -> BusinessServer:
    server = BusinessServer()
    await start_business(nursery, server)
    return server


async def test_the_summary_is_stored_and_served_and_both_webhooks_verify(
    store: Store, database_url: str, tmp_path: Path, nursery: trio.Nursery, receiver: BusinessServer
) -> None:
    _, secret = subscribe(store.db, "bakery", store, f"{receiver.url}/hooks")
    receiver.secret = secret
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        database_url=database_url,
        log_format="console",
        post_call=FAST,
    )
    urls = await nursery.start(serve, settings)
    tenant_id, session_id = await trio.to_thread.run_sync(ended_call, store)
    key = store.create_api_key(tenant_id)

    await wait_for(lambda: len(receiver.requests) >= 2)
    got = {r.json()["type"]: r for r in receiver.requests}
    assert sorted(got) == ["call.analyzed", "call.ended"]
    assert all(r.signature_ok is True for r in receiver.requests)  # Webhook(secret).verify
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 2

    async with httpx.AsyncClient(base_url=urls[0]) as client:
        answer = await client.get(
            f"/v1/calls/{session_id}", headers={"Authorization": f"Bearer {key}"}
        )
    assert answer.status_code == 200
    summary = answer.json()["summary"]
    assert summary["analyser"] == "local"
    assert summary["analysis"]["outcome"] == "completed"
    assert summary["analysis"]["caller_intent"] == "hours"
    assert summary["analysis"]["sentiment"] == "positive"  # "Thanks, great."
    assert summary["analysis"]["score"] == 0.25  # hours (1) met, booked (3) not
    assert "lookup_hours" in summary["summary"]
    assert got["call.analyzed"].json()["data"]["summary"] == summary
    assert got["call.ended"].json()["data"]["call_id"] == str(session_id)
    rows = await trio.to_thread.run_sync(list_outbox, store.db, tenant_id)
    assert {r.state for r in rows} == {"delivered"}
    async with httpx.AsyncClient(base_url=urls[0]) as client:
        exposition = (await client.get("/metrics")).text
    delivered = {
        s.labels["event"]: s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == "switchboard_webhook_deliveries_total" and s.labels["outcome"] == "delivered"
    }
    assert delivered == {"call.ended": 1.0, "call.analyzed": 1.0}
    nursery.cancel_scope.cancel()


def test_post_call_settings_come_from_the_environment() -> None:
    env = {"POST_CALL_ANALYSIS": "LLM", "WEBHOOK_MAX_ATTEMPTS": "3", "WEBHOOK_RETRY_BASE_S": "2"}
    config = Settings.from_env(env).post_call
    assert (config.analysis, config.max_attempts, config.retry_base_s) == ("llm", 3, 2.0)
    assert (config.retry_cap_s, config.timeout_s, config.poll_s) == (3600.0, 10.0, 1.0)
    for bad in ({"POST_CALL_ANALYSIS": "gpt"}, {"WEBHOOK_MAX_ATTEMPTS": "0"}):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)


def test_backoff_grows_with_jitter_and_stops_at_the_cap() -> None:
    assert retry_delay_s(1, 10, 3600, rand=lambda: 0.0) == 5.0
    assert retry_delay_s(1, 10, 3600, rand=lambda: 0.999) == pytest.approx(10, rel=1e-3)
    assert retry_delay_s(4, 10, 3600, rand=lambda: 0.0) == 40.0
    assert retry_delay_s(30, 10, 3600, rand=lambda: 0.999) == pytest.approx(3600, rel=1e-3)


def _make_due(db: Database, tenant_id: UUID) -> None:
    with db.tenant(tenant_id) as cur:
        cur.execute("UPDATE webhook_outbox SET next_attempt_at = now() WHERE state = 'pending'")


async def test_a_failing_receiver_gets_retries_with_backoff_then_a_dead_letter(
    store: Store, receiver: BusinessServer
) -> None:
    db = store.db
    subscribe(db, "bakery", store, f"{receiver.url}/error", "call.ended")  # answers 500
    tenant_id, _ = ended_call(store)
    config = PostCallSettings(max_attempts=3, retry_base_s=10, retry_cap_s=15)
    metrics = PostCallMetrics(CollectorRegistry())
    web = GuardedHttp()

    assert await deliver_once(store, config, web, metrics) == 1
    [row] = outbox_rows(db, tenant_id)
    assert (row["state"], row["attempts"], row["last_status"]) == ("pending", 1, 500)
    assert 4.5 <= row["due_in"].total_seconds() <= 10  # 10 s * 2**0, jitter [0.5, 1)
    assert await deliver_once(store, config, web, metrics) == 0  # not due yet

    _make_due(db, tenant_id)
    assert await deliver_once(store, config, web, metrics) == 1
    [row] = outbox_rows(db, tenant_id)
    assert row["attempts"] == 2 and 7 <= row["due_in"].total_seconds() <= 15  # capped at 15

    _make_due(db, tenant_id)
    assert await deliver_once(store, config, web, metrics) == 1
    [row] = outbox_rows(db, tenant_id)
    assert (row["state"], row["attempts"], row["last_error"]) == ("dead", 3, "HTTP 500")
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1  # one event
    assert metrics.deliveries.labels("call.ended", "retry")._value.get() == 2
    assert metrics.deliveries.labels("call.ended", "dead")._value.get() == 1

    _make_due(db, tenant_id)
    assert await deliver_once(store, config, web, metrics) == 0  # dead stays dead
    assert retry_outbox(db, tenant_id, row["id"]) is True  # the operator's retry
    [row] = outbox_rows(db, tenant_id)
    assert (row["state"], row["attempts"]) == ("pending", 0)


def test_two_takers_never_claim_one_row_and_a_dead_takers_lease_runs_out(store: Store) -> None:
    db = store.db
    subscribe(db, "bakery", store, "http://127.0.0.1:9/a", "call.ended")
    for _ in range(3):
        tenant_id, _ = ended_call(store)
    first = claim_webhooks(db, 60.0, limit=2)
    second = claim_webhooks(db, 60.0, limit=5)
    assert len(first) == 2 and len(second) == 1
    assert not {m for _, m in first} & {m for _, m in second}
    assert claim_webhooks(db, 60.0) == []  # all leased
    with db.tenant(tenant_id) as cur:  # the taker of `first` died: its lease ends
        cur.execute("UPDATE webhook_outbox SET lease_until = now() - interval '1 s'")
    assert len(claim_webhooks(db, 60.0)) == 3


def _chat_completion(content: str) -> dict[str, Any]:
    """An OpenAI chat completions answer (OpenAI API reference, "The chat completion object")."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1733400000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


async def test_the_llm_analyser_asks_for_json_and_scores_by_its_answer(
    store: Store, receiver: BusinessServer
) -> None:
    tenant_id, session_id = ended_call(store)
    facts = call_facts(store, tenant_id, session_id)
    assert facts is not None
    answer = {
        "summary": "The caller asked for the opening hours and got them.",
        "outcome": "completed",
        "caller_intent": "opening_hours",
        "sentiment": "positive",
        "criteria": {"hours_answered": True, "booked": False},
    }
    receiver.answer = _chat_completion(json.dumps(answer))
    async with httpx.AsyncClient() as http:
        result = await analyse_with_llm(
            facts, http, base_url=f"{receiver.url}/v1", api_key="sk-test", model="m-1"
        )
    [request] = receiver.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    sent = request.json()
    assert sent["model"] == "m-1" and sent["response_format"] == {"type": "json_object"}
    assert CALLER_LINES[0] in sent["messages"][1]["content"]
    assert "booked: The caller booked a visit." in sent["messages"][1]["content"]
    assert result["analyser"] == "llm" and "fallback" not in result
    assert result["summary"] == answer["summary"]
    assert result["analysis"]["caller_intent"] == "opening_hours"
    assert result["analysis"]["score"] == 0.25


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "ConnectError"),  # nobody listens at LLM_BASE_URL
        ("Sure! The call went well.", "not JSON"),  # prose, not the JSON asked for
        (json.dumps({"summary": "x", "outcome": "great"}), "outcome 'great'"),
    ],
)
async def test_when_the_llm_fails_the_local_analysis_is_used_and_says_why(
    store: Store, receiver: BusinessServer, content: str | None, why: str
) -> None:
    tenant_id, session_id = ended_call(store)
    facts = call_facts(store, tenant_id, session_id)
    assert facts is not None
    base = "http://127.0.0.1:9/v1"  # the discard port: refused
    if content is not None:
        receiver.answer = _chat_completion(content)
        base = f"{receiver.url}/v1"
    async with httpx.AsyncClient() as http:
        result = await analyse_with_llm(facts, http, base_url=base, api_key=None, model="m")
    assert result["analyser"] == "local"
    assert why in result["fallback"]
    assert result["analysis"]["caller_intent"] == "hours"


def _stored_summary(db: Database, tenant_id: UUID, session_id: UUID) -> Any:
    with db.tenant(tenant_id) as cur:
        cur.execute("SELECT summary FROM call_logs WHERE session_id = %s", (session_id,))
        row = cur.fetchone()
    assert row is not None
    return row[0]


async def test_with_post_call_analysis_llm_the_configured_endpoint_writes_the_summary(
    store: Store, receiver: BusinessServer
) -> None:
    subscribe(store.db, "bakery", store, "http://127.0.0.1:9/a", "call.analyzed")
    tenant_id, session_id = ended_call(store)
    receiver.answer = _chat_completion(
        json.dumps(
            {
                "summary": "Asked for the hours.",
                "outcome": "completed",
                "caller_intent": "hours",
                "sentiment": "neutral",
                "criteria": {"hours_answered": True, "booked": True},
            }
        )
    )
    settings = Settings(
        endpoints=Endpoints(llm_base_url=f"{receiver.url}/v1", llm_model="small-model"),
        post_call=PostCallSettings(analysis="llm"),
    )
    async with httpx.AsyncClient() as http:
        assert await run_jobs_once(store, settings, http) == 1
        assert await run_jobs_once(store, settings, http) == 0  # done: not taken again
    assert receiver.requests[0].json()["model"] == "small-model"
    summary = _stored_summary(store.db, tenant_id, session_id)
    assert (summary["analyser"], summary["summary"]) == ("llm", "Asked for the hours.")
    assert summary["analysis"]["score"] == 1.0
    [row] = outbox_rows(store.db, tenant_id)
    assert row["event_type"] == "call.analyzed" and row["payload"]["data"]["summary"] == summary


async def test_with_post_call_analysis_off_nothing_is_analysed_but_webhooks_still_go(
    store: Store,
) -> None:
    subscribe(store.db, "bakery", store, "http://127.0.0.1:9/a")
    tenant_id, session_id = ended_call(store)
    settings = Settings(post_call=PostCallSettings(analysis="off"))
    async with httpx.AsyncClient() as http:
        assert await run_jobs_once(store, settings, http) == 1
    assert _stored_summary(store.db, tenant_id, session_id) == {}
    rows = outbox_rows(store.db, tenant_id)
    assert [r["event_type"] for r in rows] == ["call.ended", "call.analyzed"]
    assert rows[1]["payload"]["data"]["summary"] == {}
