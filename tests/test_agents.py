"""Agent files: the example loads, every mistake is reported at its file, line and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.orchestrator.agent_file import load_agent_file, parse_agent_yaml
from switchboard.orchestrator.agents import (
    DEFAULT_NO_MATCH_REPLY,
    AgentSpec,
    Intent,
    ToolSpec,
    hours_sentence,
)
from switchboard.orchestrator.errors import AgentFileError, ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "receptionist.yaml"

MINIMAL = """\
name: front-desk
tenant: acme
greeting: Hello!
intents:
  - name: hours
    phrases: [when are you open]
    tool: lookup_hours
    reply: We are open {result}.
"""


def test_example_agent_loads() -> None:
    spec = load_agent_file(EXAMPLE)
    assert (spec.name, spec.tenant, spec.mode, spec.fallback) == (
        "receptionist",
        "demo",
        "local",
        ("local",),
    )
    assert spec.phone_numbers == ("+15005550006",)
    assert spec.transfer_number == "+15005550009"
    assert spec.greeting.startswith("Thanks for calling Bright Smile Dental.")
    assert spec.no_match_reply == DEFAULT_NO_MATCH_REPLY
    assert [i.name for i in spec.intents] == ["hours", "booking", "human", "emergency", "goodbye"]
    hours = spec.intent("hours")
    assert hours is not None
    assert hours.phrases == (
        "what are your opening hours",
        "when are you open",
        "what time do you close",
        "are you open today",
        "opening hours",
    )
    assert hours.tool == "lookup_hours"
    assert hours.render_reply(hours_sentence(spec)) == (
        "We are open Monday to Friday, 8 AM to 6 PM; Saturday, 9 AM to 1 PM; closed on Sunday."
    )
    assert [(i.name, i.tool) for i in spec.intents[2:]] == [
        ("human", "transfer_to_human"),
        ("emergency", "transfer_to_human"),
        ("goodbye", "hangup_call"),
    ]
    assert "911" in spec.intents[3].reply
    assert spec.intents[4].reply == "Thank you for calling Bright Smile Dental. Goodbye!"
    tools = {t.name: t for t in spec.tools}
    assert set(tools) == {"lookup_hours", "transfer_to_human", "hangup_call"}
    assert tools["transfer_to_human"].parameters_json() == {
        "type": "object",
        "properties": {
            "reason": {
                "type": "string",
                "description": "Why the caller wants a person, in a few words.",
            }
        },
    }


def test_to_json_round_trips_exactly_through_json_text() -> None:
    spec = load_agent_file(EXAMPLE)
    data = json.loads(json.dumps(spec.to_json()))
    assert AgentSpec.from_json(data) == spec
    assert AgentSpec.from_json(data).to_json() == spec.to_json()


def test_spec_is_read_only() -> None:
    spec = load_agent_file(EXAMPLE)
    with pytest.raises(TypeError):
        spec.hours["sunday"] = "10:00-12:00"  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.tools[1].parameters["type"] = "string"  # type: ignore[index]


def _spec(hours: dict[str, str]) -> AgentSpec:
    return AgentSpec(name="a", tenant="t", greeting="Hi", intents=(), hours=hours)


@pytest.mark.parametrize(
    ("hours", "sentence"),
    [
        (
            {d: "08:00-18:00" for d in ("monday", "tuesday", "wednesday", "thursday", "friday")}
            | {"saturday": "09:00-13:00", "sunday": "closed"},
            "Monday to Friday, 8 AM to 6 PM; Saturday, 9 AM to 1 PM; closed on Sunday",
        ),
        (
            {"monday": "09:30-12:00", "tuesday": "09:30-12:00", "thursday": "00:00-24:00"}
            | {"saturday": "00:00-00:30"},
            "Monday and Tuesday, 9:30 AM to noon; Thursday, 24 hours; "
            "Saturday, midnight to 12:30 AM; closed on Wednesday, Friday and Sunday",
        ),
        (
            {d: "07:00-19:45" for d in ("monday", "tuesday", "wednesday", "thursday")}
            | {d: "07:00-19:45" for d in ("friday", "saturday", "sunday")},
            "every day, 7 AM to 7:45 PM",
        ),
        ({"monday": "closed"}, "closed every day"),
        ({}, ""),
    ],
)
def test_hours_sentence_groups_equal_consecutive_days(hours: dict[str, str], sentence: str) -> None:
    assert hours_sentence(_spec(hours)) == sentence


def _replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


# (test id, agent file text, line, key, start of the message)
ERRORS = [
    (
        "unknown key, with suggestion",
        _replace(MINIMAL, "greeting:", "greting:"),
        3,
        "greting",
        "unknown key (did you mean 'greeting'?)",
    ),
    (
        "missing required key",
        _replace(MINIMAL, "tenant: acme\n", ""),
        1,
        "tenant",
        "required key is missing",
    ),
    (
        "wrong type: number for a list",
        _replace(MINIMAL, "[when are you open]", "42"),
        6,
        "intents[0].phrases",
        "expected a list of strings, got a number",
    ),
    (
        "wrong type inside a list",
        _replace(MINIMAL, "[when are you open]", "[when are you open, 7]"),
        6,
        "intents[0].phrases[1]",
        "expected a string, got a number",
    ),
    (
        "unknown key in an intent",
        _replace(MINIMAL, "    phrases:", "    phrase:"),
        6,
        "intents[0].phrase",
        "unknown key (did you mean 'phrases'?)",
    ),
    (
        "missing key in an intent",
        _replace(MINIMAL, "    reply: We are open {result}.\n", ""),
        5,
        "intents[0].reply",
        "required key is missing",
    ),
    (
        "bad E.164 number",
        MINIMAL + 'phone_numbers: ["+1 500 555 0006"]\n',
        9,
        "phone_numbers[0]",
        "'+1 500 555 0006' is not an E.164 phone number",
    ),
    (
        "unquoted phone number",
        MINIMAL + "phone_numbers:\n  - +15005550006\n",
        10,
        "phone_numbers[0]",
        'expected a string, got a number (quote it: "+15005550006")',
    ),
    (
        "bad transfer number",
        MINIMAL + "transfer_number: '5550009'\n",
        9,
        "transfer_number",
        "'5550009' is not an E.164 phone number",
    ),
    (
        "unknown when_busy",
        MINIMAL + "when_busy: rejct\n",
        9,
        "when_busy",
        "unknown value 'rejct' (did you mean 'reject'?)",
    ),
    (
        "when_busy transfer without a number",
        MINIMAL + "when_busy: transfer\n",
        9,
        "when_busy",
        "'transfer' needs a transfer_number",
    ),
    (
        "bad hours format",
        MINIMAL + "hours:\n  monday: 9-5\n",
        10,
        "hours.monday",
        'expected "HH:MM-HH:MM" (24-hour clock) or "closed", got \'9-5\'',
    ),
    (
        "hours closing before opening",
        MINIMAL + "hours:\n  friday: '18:00-08:00'\n",
        10,
        "hours.friday",
        "'18:00-08:00' closes before it opens",
    ),
    (
        "unknown weekday",
        MINIMAL + "hours:\n  mondy: closed\n",
        10,
        "hours.mondy",
        "unknown weekday (did you mean 'monday'?)",
    ),
    (
        "duplicate intent names",
        MINIMAL + "  - name: hours\n    phrases: [opening hours]\n    reply: Nine to five.\n",
        9,
        "intents[1].name",
        "duplicate intent name 'hours'",
    ),
    (
        "phrase used by two intents",
        MINIMAL + "  - name: open\n    phrases: [When are you  open]\n    reply: Soon.\n",
        10,
        "intents[1].phrases[0]",
        "phrase 'When are you  open' is already used by intent 'hours'",
    ),
    (
        "unknown tool",
        _replace(MINIMAL, "tool: lookup_hours", "tool: lookup_hour"),
        7,
        "intents[0].tool",
        "unknown tool 'lookup_hour' (did you mean 'lookup_hours'?)",
    ),
    (
        "{result} without a tool",
        _replace(MINIMAL, "    tool: lookup_hours\n", ""),
        7,
        "intents[0].reply",
        "uses {result} but the intent has no tool",
    ),
    (
        "unknown mode",
        MINIMAL + "mode: openai-realtme\n",
        9,
        "mode",
        "unknown mode 'openai-realtme' (did you mean 'openai-realtime'?)",
    ),
    (
        "unknown fallback mode",
        MINIMAL + "fallback: [cascaded, locale]\n",
        9,
        "fallback[1]",
        "unknown mode 'locale' (did you mean 'local'?)",
    ),
    (
        "unknown time zone",
        MINIMAL + "timezone: Europe/Pariss\n",
        9,
        "timezone",
        "unknown time zone 'Europe/Pariss'",
    ),
    (
        "string for a number",
        MINIMAL + "max_call_seconds: ten\n",
        9,
        "max_call_seconds",
        "expected a whole number, got a string",
    ),
    (
        "non-positive number",
        MINIMAL + "idle_timeout_seconds: 0\n",
        9,
        "idle_timeout_seconds",
        "must be positive, got 0",
    ),
    (
        "duplicate key",
        MINIMAL + "name: other\n",
        9,
        "name",
        "duplicate key",
    ),
    (
        "empty greeting",
        _replace(MINIMAL, "greeting: Hello!", "greeting: ''"),
        3,
        "greeting",
        "must not be empty",
    ),
    (
        "tool parameters that are not an object schema",
        MINIMAL + "tools:\n  - name: lookup_hours\n    description: Hours.\n"
        "    parameters: {type: string}\n",
        12,
        "tools[0].parameters",
        "must be a JSON Schema with 'type: object'",
    ),
    (
        "bad tool name",
        MINIMAL + "tools:\n  - name: look up\n    description: Hours.\n",
        10,
        "tools[0].name",
        "tool name 'look up' must be 1-64 characters",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "key", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_errors_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    path = tmp_path / "front-desk.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(AgentFileError) as caught:
        load_agent_file(path)
    err = caught.value
    assert (err.path, err.line, err.key) == (str(path), line, key)
    assert str(err).startswith(f"{path}:{line}: key '{key}': {message}")
    assert isinstance(err, ConfigError)


def test_yaml_syntax_error_names_file_and_line() -> None:
    text = _replace(MINIMAL, "[when are you open]", "[when are you open")
    with pytest.raises(AgentFileError) as caught:
        parse_agent_yaml(text, "front-desk.yaml")
    assert caught.value.line == 7
    assert caught.value.key is None
    assert str(caught.value).startswith("front-desk.yaml:7: invalid YAML: expected ','")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "<string>:1: the file is empty"),
        ("# nothing\n", "<string>:1: the file is empty"),
        ("- name: x\n", "<string>:1: expected a mapping of agent settings, got a list"),
        ("name: a\n\x07\n", "<string>:2: invalid YAML: special characters are not allowed"),
    ],
)
def test_not_an_agent_at_all(text: str, message: str) -> None:
    with pytest.raises(AgentFileError, match="^" + message.replace("(", r"\(")):
        parse_agent_yaml(text)


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(AgentFileError, match=f"^{missing}: cannot read: No such file"):
        load_agent_file(missing)


def test_defaults_and_optional_parts() -> None:
    spec = parse_agent_yaml(
        MINIMAL + "tools:\n  - name: check_stock\n    description: Stock.\n"
        "    url: https://shop.example/stock\n"
    )
    assert spec == AgentSpec(
        name="front-desk",
        tenant="acme",
        greeting="Hello!",
        intents=(Intent("hours", ("when are you open",), "We are open {result}.", "lookup_hours"),),
        tools=(ToolSpec("check_stock", "Stock.", url="https://shop.example/stock"),),
    )
    tool = spec.tools[0]
    assert (tool.kind, tool.method, tool.timeout_ms, tool.ack_ms, tool.is_async) == (
        "webhook",
        "POST",
        10_000,
        1500,
        False,
    )
    assert (spec.mode, spec.timezone, spec.max_call_seconds, spec.idle_timeout_seconds) == (
        "local",
        "UTC",
        600,
        30,
    )
    assert spec.tools[0].parameters_json() == {"type": "object", "properties": {}}


def test_constructing_a_broken_spec_raises_value_error() -> None:
    with pytest.raises(ValueError, match=r"not an E\.164 phone number"):
        AgentSpec(name="a", tenant="t", greeting="Hi", intents=(), phone_numbers=("555",))
    with pytest.raises(ValueError, match="unknown tool 'nope'"):
        AgentSpec(name="a", tenant="t", greeting="Hi", intents=(Intent("x", ("x",), "ok", "nope"),))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from(
    ["name", "tenant", "greeting", "intents", "hours", "phone_numbers", "tools", "mode", "x"]
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=6) | st.text(max_size=60))
def test_any_input_gives_a_spec_or_an_agent_file_error(document: object) -> None:
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    try:
        spec = parse_agent_yaml(text, "fuzz.yaml")
    except AgentFileError as err:
        assert str(err).startswith("fuzz.yaml")
    else:
        assert AgentSpec.from_json(spec.to_json()) == spec


def test_provider_options_parse_with_defaults_and_round_trip() -> None:
    spec = parse_agent_yaml(
        "name: a\ntenant: t\ngreeting: hi\nintents: []\nmode: openai-realtime\n"
        "providers:\n  openai-realtime: {voice: marin, turn_detection: semantic_vad}\n"
    )
    assert spec.option("openai-realtime", "voice") == "marin"
    assert spec.option("openai-realtime", "model") == "gpt-realtime"  # the default
    assert spec.option("gemini-live", "voice") == "Puck"
    assert AgentSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize(
    ("providers", "message"),
    [
        ("  openai-realtime: {colour: red}", "unknown key"),
        ("  openai-realtime: {turn_detection: push_to_talk}", "turn_detection must be one of"),
        ("  nope: {}", "unknown key"),
    ],
)
def test_provider_options_errors_name_the_line_and_key(providers: str, message: str) -> None:
    with pytest.raises(AgentFileError) as caught:
        parse_agent_yaml(
            "name: a\ntenant: t\ngreeting: hi\nintents: []\nproviders:\n" + providers + "\n",
            "agent.yaml",
        )
    assert message in str(caught.value)
    assert "agent.yaml:6" in str(caught.value)


# -- failover settings ----------------------------------------------------------------------


def test_failover_settings_parse_with_defaults_and_round_trip() -> None:
    from switchboard.actors.failover import FailoverSettings

    spec = parse_agent_yaml(
        MINIMAL + "failover:\n  stall_timeout_ms: 1200\n  lock_after_turns: 5\n", "agent.yaml"
    )
    assert spec.failover == FailoverSettings(stall_timeout_ms=1200, lock_after_turns=5)
    assert spec.failover.connect_timeout_ms == 3000  # the default
    assert parse_agent_yaml(MINIMAL).failover == FailoverSettings()
    assert AgentSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    # A spec stored before the key existed reads back with the defaults.
    stored = spec.to_json()
    del stored["failover"]
    assert AgentSpec.from_json(stored).failover == FailoverSettings()


@pytest.mark.parametrize(
    ("failover", "message"),
    [
        ("  stall_timeout: 2000", "key 'failover.stall_timeout': unknown key (did you mean"),
        (
            "  stall_timeout_ms: 2.5",
            "key 'failover.stall_timeout_ms': expected a whole number, got 2.5",
        ),
        ("  cooldown_seconds: soon", "expected a whole number, got a string"),
        ("  connect_timeout_ms: 0", "connect_timeout_ms must be between 100 and 60000, got 0"),
        ("  max_switches_per_call: -1", "max_switches_per_call must be between 0 and 100, got -1"),
        ("  lock_after_turns: [3]", "expected a whole number, got a list"),
    ],
)
def test_failover_errors_name_the_line_and_key(failover: str, message: str) -> None:
    text = MINIMAL + "failover:\n  audio_gap_timeout_ms: 900\n" + failover + "\n"
    with pytest.raises(AgentFileError) as caught:
        parse_agent_yaml(text, "agent.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("agent.yaml:11:")


def test_failover_must_be_a_mapping() -> None:
    with pytest.raises(AgentFileError, match=r"^agent.yaml:9: key 'failover': expected a mapping"):
        parse_agent_yaml(MINIMAL + "failover: 3\n", "agent.yaml")


def test_a_spec_with_broken_failover_settings_raises_value_error() -> None:
    with pytest.raises(ValueError, match="stall_timeout_ms must be between 100 and 60000, got 5"):
        AgentSpec.from_json(
            {**parse_agent_yaml(MINIMAL).to_json(), "failover": {"stall_timeout_ms": 5}}
        )
    with pytest.raises(ValueError, match="unknown failover settings: stall"):
        AgentSpec.from_json({**parse_agent_yaml(MINIMAL).to_json(), "failover": {"stall": 5}})


def test_function_tools_offer_a_transfer_only_with_a_number_and_let_the_agent_override() -> None:
    base = "name: a\ntenant: t\ngreeting: hi\nintents: []\n"
    without = parse_agent_yaml(base)
    assert [t.name for t in without.function_tools()] == ["lookup_hours", "hangup_call"]
    spec = parse_agent_yaml(
        base + 'transfer_number: "+15005550009"\n'
        "tools:\n  - name: lookup_hours\n    description: Our own hours tool.\n"
    )
    tools = {t.name: t for t in spec.function_tools()}
    assert set(tools) == {"lookup_hours", "transfer_to_human", "hangup_call"}
    assert tools["lookup_hours"].description == "Our own hours tool."
