"""End to end: phone calls whose agent calls the business's webhook and edge function.

A real server on loopback (hypercorn, in-process) on a fresh database of the
session's PostgreSQL; calls placed as Twilio would (``switchboard call``'s
client: signed webhook, TwiML, Media Streams over a real WebSocket); the
``local`` provider hears the caller and calls the intent's tool. The business
is a real HTTP server on 127.0.0.1 (``tool_servers.BusinessServer``): it checks
the Standard Webhooks signature with the ``standardwebhooks`` package and the
edge function's token with pyjwt, with the tenant's secret as
``switchboard tenant webhook-secret`` prints it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio
from tool_servers import BusinessServer, CanaryServer, start_business, start_canary

from switchboard.actors.tools.edge_function import signing_key
from switchboard.orchestrator import cli
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.caller import CallerLine, CallSummary, place_call
from switchboard.orchestrator.config import Settings
from switchboard.orchestrator.db import Database
from switchboard.orchestrator.server import serve
from switchboard.orchestrator.store import Store

NUMBER = "+15005550077"
AGENT_YAML = """
name: shop-line
tenant: bakery
greeting: Thanks for calling the bakery.
mode: local
phone_numbers: ["{number}"]
idle_timeout_seconds: 30
intents:
  - name: order
    phrases: [where is my order]
    tool: check_order
    reply: Your order {{result}}.
  - name: stock
    phrases: [do you have bread today]
    tool: check_stock
    reply: "{{result}}."
  - name: bye
    phrases: [thank you goodbye]
    reply: Goodbye.
tools:
  - name: check_order
    description: Where the caller's order is.
    url: {orders}/orders
    headers: {{x-api-key: bakery-key}}
    timeout_ms: 4000
  - name: check_stock
    description: What is in stock today.
    function: stock
"""


@dataclass
class Shop:
    url: str
    database_url: str
    api_key: str
    orders: BusinessServer
    functions: BusinessServer
    canary: CanaryServer

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(sql, args).fetchall()

    async def call(self, *lines: str) -> CallSummary:
        return await place_call(
            self.url,
            [CallerLine.say(line) for line in lines],
            to_number=NUMBER,
            auth_token="test-auth-token",
            api_key=self.api_key,
            realtime=False,
        )

    def events(self, session_id: str, type_: str) -> list[dict[str, Any]]:
        return [
            row[0]
            for row in self.rows(
                "SELECT payload FROM call_events WHERE session_id = %s AND type = %s ORDER BY seq",
                session_id,
                type_,
            )
        ]


@pytest.fixture
async def shop(
    database_url: str,
    tmp_path: Path,
    nursery: trio.Nursery,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Shop]:
    monkeypatch.setenv("DATABASE_URL", database_url)  # for the `switchboard tenant` commands
    orders = BusinessServer(answer={"result": "ships tomorrow morning"})
    functions = BusinessServer(answer={"result": "We have sourdough and rye today."})
    orders_url, orders_port = await start_business(nursery, orders)
    functions_url, _ = await start_business(nursery, functions)
    canary = await start_canary(nursery)
    settings = Settings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        database_url=database_url,
        twilio_auth_token="test-auth-token",
        playout_lead_ms=60_000,
        log_format="console",
        functions_base_url=f"{functions_url}/functions/v1",
    )
    urls = await nursery.start(serve, settings)
    agent = parse_agent_yaml(AGENT_YAML.format(number=NUMBER, orders=orders_url))
    with Database(database_url) as db:
        store = Store(db)
        api_key = store.create_api_key(store.apply_agent(agent) and store.ensure_tenant("bakery"))
    # The operator lets the tenant's webhooks reach the business on loopback (refused by
    # the SSRF rules otherwise; the functions server is the operator's own setting), and
    # gives the business the signing secret.
    assert cli.main(["tenant", "allow", "bakery", f"127.0.0.1:{orders_port}"]) == 0
    capsys.readouterr()
    assert cli.main(["tenant", "webhook-secret", "bakery"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("whsec_")
    orders.secret = secret
    functions.jwt_key = signing_key(secret)
    yield Shop(urls[0], database_url, api_key, orders, functions, canary)
    nursery.cancel_scope.cancel()


async def test_a_caller_hears_the_answer_of_a_signed_webhook_and_an_edge_function(
    shop: Shop,
) -> None:
    summary = await shop.call("where is my order", "do you have bread today", "thank you goodbye")
    assert summary.session_id is not None
    agent = [t.agent or "" for t in summary.turns]
    assert agent[0] == "Your order ships tomorrow morning."
    assert agent[1] == "We have sourdough and rye today."
    assert agent[2] == "Goodbye."

    # The webhook: one signed POST, verified by the business with standardwebhooks.
    (request,) = shop.orders.requests
    assert (request.method, request.path) == ("POST", "/orders")
    assert request.signature_ok is True
    assert request.headers["x-api-key"] == "bakery-key"
    body = request.json()
    assert body["tool"] == "check_order" and body["arguments"] == {}
    assert body["call"]["session_id"] == summary.session_id
    assert body["call"]["tenant"] == "bakery" and body["call"]["from"] == "+15005550001"
    assert request.headers["idempotency-key"] == request.headers["webhook-id"]

    # The edge function: a token for this tenant, this call and this tool call, one minute.
    (function,) = shop.functions.requests
    assert function.path == "/functions/v1/stock" and function.token_error is None
    claims = function.claims
    assert claims is not None
    tenant_id = shop.rows("SELECT id FROM tenants WHERE name = 'bakery'")[0][0]
    assert claims["tenant_id"] == str(tenant_id) and claims["session_id"] == summary.session_id
    assert claims["tool_call_id"] == function.json()["call_id"]
    assert claims["exp"] - claims["iat"] == 60

    # The call's log has each tool's call and result, with timings.
    results = shop.events(summary.session_id, "tool:result")
    assert [(r["name"], r["ok"]) for r in results] == [("check_order", True), ("check_stock", True)]
    assert all(r["latency_ms"] >= 0 for r in results)
    assert shop.canary.connections == []


async def test_a_refused_webhook_is_a_tool_error_and_the_call_goes_on(shop: Shop) -> None:
    """The tenant's allowlist no longer names the business: the SSRF rules refuse
    127.0.0.1, the agent says it cannot do it, and the next turn is answered."""
    assert cli.main(["tenant", "allow", "bakery", "--clear"]) == 0
    summary = await shop.call("where is my order", "thank you goodbye")
    assert summary.session_id is not None
    agent = [t.agent or "" for t in summary.turns]
    assert agent[0] == "Sorry, I'm not able to do that right now."
    assert agent[1] == "Goodbye."
    assert shop.orders.requests == []
    (result,) = shop.events(summary.session_id, "tool:result")
    assert not result["ok"] and result["error"] == "refused"
    assert "127.0.0.1" in result["output"] and "loopback" in result["output"]
