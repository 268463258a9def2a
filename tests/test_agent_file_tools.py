"""The agent file's tools: webhooks, edge functions and their options, with errors a
person can act on (file, line, key), as the rest of the agent file."""

from __future__ import annotations

import json

import pytest

from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.agents import AgentSpec, ToolSpec
from switchboard.orchestrator.errors import AgentFileError

HEAD = """\
name: shop
tenant: acme
greeting: Hello!
intents: []
tools:
"""

WEBHOOK = """\
  - name: check_order
    description: Where an order is.
    url: https://shop.example/orders
    method: put
    headers: {x-api-key: k1}
    timeout_ms: 4000
    ack_ms: 800
    parameters:
      type: object
      properties: {order: {type: string, pattern: "^[A-Z][0-9]+$"}}
      required: [order]
  - name: book_table
    description: Book a table.
    function: book-table
    async: true
"""


def test_a_webhook_and_an_edge_function_load_with_their_options() -> None:
    spec = parse_agent_yaml(HEAD + WEBHOOK)
    order, book = spec.tools
    assert (order.kind, order.url, order.method, dict(order.headers)) == (
        "webhook",
        "https://shop.example/orders",
        "PUT",
        {"x-api-key": "k1"},
    )
    assert (order.timeout_ms, order.ack_ms, order.is_async) == (4000, 800, False)
    assert (book.kind, book.function, book.is_async, book.ack_ms) == (
        "function",
        "book-table",
        True,
        1500,
    )
    # Both are offered to a model, after the builtins.
    assert [t.name for t in spec.function_tools()][-2:] == ["check_order", "book_table"]
    # Stored as JSON and read back the same (the agents table keeps to_json()).
    again = AgentSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec and again.tools[1].to_json()["async"] is True


@pytest.mark.parametrize(
    ("tool", "line", "key", "message"),
    [
        (
            "  - name: check_order\n    description: x\n",
            6,
            "tools[0]",
            "tool 'check_order' needs a url (a webhook), a function (an edge function) or "
            "python (an installed tool)",
        ),
        (
            "  - name: t\n    description: x\n    url: ftp://shop.example/x\n",
            8,
            "tools[0].url",
            "'ftp://shop.example/x': a webhook URL must start with https:// (or http://)",
        ),
        (
            "  - name: t\n    description: x\n    url: https://u:p@shop.example/x\n",
            8,
            "tools[0].url",
            "put credentials in headers, not in the URL",
        ),
        (
            "  - name: t\n    description: x\n    url: https://a.example\n    function: f\n",
            6,
            "tools[0]",
            "give one of url, function or python, not ['url', 'function']",
        ),
        (
            "  - name: t\n    description: x\n    function: f\n    method: GET\n",
            9,
            "tools[0].method",
            "only a webhook (url) has it",
        ),
        (
            "  - name: t\n    description: x\n    url: https://a.example\n    method: GET\n",
            9,
            "tools[0].method",
            "must be one of POST, PUT, PATCH, got 'GET'",
        ),
        (
            "  - name: t\n    description: x\n    url: https://a.example\n"
            "    headers: {webhook-signature: forged}\n",
            9,
            "tools[0].headers.webhook-signature",
            "the runtime sets webhook-signature itself",
        ),
        (
            "  - name: t\n    description: x\n    url: https://a.example\n    ack_ms: 9000\n",
            9,
            "tools[0].ack_ms",
            "at most 5000 ms",
        ),
        (
            "  - name: t\n    description: x\n    url: https://a.example\n    timeout_ms: 0\n",
            9,
            "tools[0].timeout_ms",
            "must be positive, got 0",
        ),
        (
            "  - name: t\n    description: x\n    url: https://a.example\n    async: yes please\n",
            9,
            "tools[0].async",
            "expected true or false, got a string",
        ),
        (
            "  - name: lookup_hours\n    description: x\n    timeout_ms: 100\n",
            8,
            "tools[0].timeout_ms",
            "a builtin has no such option",
        ),
        (
            "  - name: t\n    description: x\n    url: https://a.example\n"
            "    parameters: {type: object, properties: {n: {type: numbr}}}\n",
            9,
            "tools[0].parameters",
            "not a valid JSON Schema: 'numbr' is not valid",
        ),
    ],
)
def test_tool_errors_name_the_line_and_the_key(
    tool: str, line: int, key: str, message: str
) -> None:
    with pytest.raises(AgentFileError) as caught:
        parse_agent_yaml(HEAD + tool, "shop.yaml")
    err = caught.value
    assert (err.line, err.key) == (line, key), str(err)
    assert message in str(err)


def test_a_builtin_may_be_declared_to_change_what_the_model_is_told() -> None:
    spec = parse_agent_yaml(HEAD + "  - name: hangup_call\n    description: End it politely.\n")
    (tool,) = spec.tools
    assert tool == ToolSpec("hangup_call", "End it politely.") and tool.kind == "builtin"
