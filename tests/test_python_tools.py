"""Python tools from installed packages: an agent file names a ``switchboard.tools``
entry point, gets its description and parameters, and the tool runs; its crash is
an outcome the model sees, never an error of the call."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import jsonschema
import pytest
import structlog
import trio
from python_tools_support import install_tools, write_distribution
from tool_harness import ExecutorHarness

from switchboard.actors.tools.invocation import ToolInvocation
from switchboard.actors.tools.python_tools import (
    MAX_MESSAGE_CHARS,
    MAX_OUTPUT_BYTES,
    PythonToolError,
    PythonToolRunner,
    clear_loaded_tools,
    installed_tool_names,
    load_python_tool,
    python_tool,
)
from switchboard.orchestrator.agent_file import load_agent_file, parse_agent_yaml
from switchboard.orchestrator.errors import AgentFileError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "python_tools"

CLINIC = '''
from __future__ import annotations

from typing import Literal

import trio

from switchboard.actors.tools.invocation import ToolInvocation


async def book_table(
    guests: int,
    time: str,
    context: ToolInvocation,
    seating: Literal["inside", "terrace"] = "inside",
    notes: str | None = None,
) -> dict[str, object]:
    """Book a table for the caller.

    Only for tonight; the kitchen closes at 22:00.

    Args:
        guests: how many people, 1 to 12.
        time: the time as HH:MM.
    """
    if guests > 12:
        raise ValueError("we seat at most 12 at one table")
    await trio.sleep(0)
    return {"booked": True, "guests": guests, "time": time, "seating": seating,
            "caller": context.from_number, "guests_type": type(guests).__name__}


async def menu() -> str:
    return "Soup of the day: leek and potato. " * 400


async def undocumented(x: int) -> int:
    return x
'''

AGENT = """\
name: bistro
tenant: acme
greeting: Hello!
intents:
  - name: book
    phrases: [book a table]
    tool: book_table
    reply: "{result}"
tools:
  - name: book_table
    python: {entry_point}
"""


@pytest.fixture(autouse=True)
def _fresh_lookups() -> Iterator[None]:
    """Each test installs its own packages: runners look entry points up anew."""
    clear_loaded_tools()
    yield
    clear_loaded_tools()


def agent_yaml(entry_point: str) -> str:
    return AGENT.replace("{entry_point}", entry_point)


@pytest.fixture
def clinic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An installed distribution ``bistro-tools`` with three tools."""
    install_tools(
        monkeypatch,
        tmp_path / "site",
        "bistro-tools",
        {"bistro_tools": CLINIC},
        {
            "book_table": "bistro_tools:book_table",
            "menu": "bistro_tools:menu",
            "undocumented": "bistro_tools:undocumented",
        },
    )


def invocation(tool: str, /, **arguments: object) -> ToolInvocation:
    return ToolInvocation(
        call_id="call_8dK2xq",
        name=tool,
        arguments=arguments,
        session_id=UUID(int=1),
        tenant_id=UUID(int=2),
        agent_id=UUID(int=3),
        tenant="acme",
        agent="bistro",
        call_sid="CA0123",
        from_number="+15005550100",
        to_number="+15005550006",
    )


# -- discovery and the agent file


def test_an_installed_entry_point_is_found_with_its_description_and_schema(clinic: None) -> None:
    assert {"book_table", "menu", "undocumented"} <= set(installed_tool_names())
    tool = load_python_tool("book_table")
    assert tool.target == "bistro_tools:book_table"
    assert tool.description == "Book a table for the caller."
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "guests": {"type": "integer", "description": "how many people, 1 to 12."},
            "time": {"type": "string", "description": "the time as HH:MM."},
            "seating": {"type": "string", "enum": ["inside", "terrace"], "default": "inside"},
            "notes": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["guests", "time"],
        "additionalProperties": False,
    }
    jsonschema.Draft202012Validator.check_schema(tool.parameters)


def test_an_agent_file_naming_it_loads_with_the_functions_description(clinic: None) -> None:
    spec = parse_agent_yaml(agent_yaml("book_table"), "bistro.yaml")
    (tool,) = spec.tools
    assert (tool.kind, tool.python, tool.description) == (
        "python",
        "book_table",
        "Book a table for the caller.",
    )
    assert tool.parameters_json() == load_python_tool("book_table").parameters
    assert tool.parameters_json()["required"] == ["guests", "time"]


def test_the_files_own_description_and_parameters_win(clinic: None) -> None:
    text = agent_yaml("book_table") + (
        "    description: Reserve a table tonight.\n"
        "    parameters:\n"
        "      type: object\n"
        "      properties: {guests: {type: integer}, time: {type: string}}\n"
        "      required: [guests, time]\n"
    )
    (tool,) = parse_agent_yaml(text, "bistro.yaml").tools
    assert tool.description == "Reserve a table tonight."
    assert tool.parameters_json() == {
        "type": "object",
        "properties": {"guests": {"type": "integer"}, "time": {"type": "string"}},
        "required": ["guests", "time"],
    }


def test_an_entry_point_not_installed_is_an_agent_file_error_naming_those_that_are(
    clinic: None,
) -> None:
    with pytest.raises(AgentFileError) as caught:
        parse_agent_yaml(agent_yaml("book_tabel"), "bistro.yaml")
    message = str(caught.value)
    assert message.startswith("bistro.yaml:11: key 'tools[0].python': ")
    assert "no installed Python tool 'book_tabel'; did you mean 'book_table'?" in message
    assert "'book_table', 'menu', 'undocumented'" in message


def test_a_tool_without_a_docstring_needs_a_description_in_the_file(clinic: None) -> None:
    text = agent_yaml("undocumented")
    with pytest.raises(AgentFileError, match=r"tools\[0\]\.description'.*no docstring"):
        parse_agent_yaml(text, "bistro.yaml")
    (tool,) = parse_agent_yaml(text + "    description: Echo a number.\n").tools
    assert tool.description == "Echo a number."


def test_a_webhook_still_needs_a_description() -> None:
    text = AGENT.replace("python: {entry_point}", "url: https://example.com/book")
    with pytest.raises(AgentFileError, match=r"tools\[0\]\.description': required key"):
        parse_agent_yaml(text, "bistro.yaml")


def test_an_entry_point_that_does_not_import_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install_tools(
        monkeypatch,
        tmp_path / "site",
        "broken-tools",
        {"broken_tools": "import not_a_module_anywhere\n", "sync_tools": "def f(x: int): ...\n"},
        {"broken": "broken_tools:f", "blocking": "sync_tools:f", "absent": "sync_tools:g"},
    )
    with pytest.raises(PythonToolError, match=r"'broken' \(broken_tools:f\) does not import: "):
        load_python_tool("broken")
    with pytest.raises(PythonToolError, match=r"must be an async function .*trio.to_thread"):
        load_python_tool("blocking")
    with pytest.raises(PythonToolError, match=r"'absent' .*does not import: AttributeError"):
        load_python_tool("absent")


def test_two_packages_declaring_one_name_differently_is_an_error(
    clinic: None, tmp_path: Path
) -> None:
    write_distribution(tmp_path / "site", "other-tools", {"menu": "other_tools:menu"})
    importlib.invalidate_caches()
    with pytest.raises(PythonToolError, match="more than one installed package"):
        load_python_tool("menu")


# -- running


async def test_running_it_calls_the_function_with_the_arguments_and_the_call(
    clinic: None,
) -> None:
    runner = PythonToolRunner({"reserve": "book_table"})
    outcome = await runner(invocation("reserve", guests=4.0, time="19:30"))
    assert outcome.ok, outcome
    assert json.loads(outcome.output) == {
        "booked": True,
        "guests": 4,
        "time": "19:30",
        "seating": "inside",
        "caller": "+15005550100",
        "guests_type": "int",
    }
    assert " " not in outcome.output  # compact JSON


async def test_an_exception_is_a_crashed_outcome_and_the_tool_still_runs(clinic: None) -> None:
    runner = PythonToolRunner({"book_table": "book_table"})
    with structlog.testing.capture_logs() as logs:
        outcome = await runner(invocation("book_table", guests=20, time="19:30"))
    assert (outcome.ok, outcome.error) == (False, "crashed")
    assert "ValueError: we seat at most 12 at one table" in outcome.output
    assert outcome.detail == {
        "exception_type": "ValueError",
        "message": "we seat at most 12 at one table",
    }
    (log,) = [e for e in logs if e["event"] == "python tool crashed"]
    assert (log["tool"], log["call_id"], log["log_level"]) == (
        "book_table",
        "call_8dK2xq",
        "warning",
    )
    assert (await runner(invocation("book_table", guests=2, time="20:00"))).ok


async def test_a_huge_message_or_a_sys_exit_is_a_crashed_outcome_too() -> None:
    async def chatty() -> str:
        """Fails at length."""
        raise RuntimeError("x" * 10_000)

    async def quitter() -> str:
        """Ends the process, or would."""
        raise SystemExit(3)

    runner = PythonToolRunner(
        {"chatty": python_tool("chatty", chatty), "quit": python_tool("quit", quitter)}
    )
    chatted = await runner(invocation("chatty"))
    assert (chatted.error, len(chatted.detail["message"])) == ("crashed", MAX_MESSAGE_CHARS)
    assert len(chatted.output) < MAX_MESSAGE_CHARS + 200
    quit_ = await runner(invocation("quit"))
    assert (quit_.error, quit_.detail["exception_type"]) == ("crashed", "SystemExit")


async def test_a_long_answer_is_capped_with_a_note(clinic: None) -> None:
    outcome = await PythonToolRunner({"menu": "menu"})(invocation("menu"))
    assert outcome.ok
    shown, note = outcome.output.split(" [truncated: ")
    assert len(shown.encode()) <= MAX_OUTPUT_BYTES
    assert shown.startswith("Soup of the day: leek and potato.")
    answered = len(("Soup of the day: leek and potato. " * 400).encode())
    assert note == f"the answer is {answered} bytes; the first {MAX_OUTPUT_BYTES} shown]"
    assert outcome.detail == {"bytes": answered, "truncated": True}


async def test_failures_that_are_not_the_functions_are_outcomes_too(clinic: None) -> None:
    runner = PythonToolRunner({"book_table": "book_table", "gone": "uninstalled_tool"})
    unknown = await runner(invocation("search"))
    assert (unknown.ok, unknown.error) == (False, "unknown_tool")
    gone = await runner(invocation("gone"))
    assert (gone.ok, gone.error) == (False, "not_configured")
    assert "no installed Python tool 'uninstalled_tool'" in gone.detail["message"]
    # The agent file's own parameters let through an argument the function lacks.
    wrong = await runner(invocation("book_table", guests=2, time="20:00", table=7))
    assert (wrong.ok, wrong.error) == (False, "invalid_arguments")
    assert "(unexpected: table)" in wrong.output
    short = await runner(invocation("book_table", guests=2))
    assert (short.error, short.detail["missing"]) == ("invalid_arguments", ["time"])


async def test_an_answer_that_is_not_json_is_an_invalid_json_outcome() -> None:
    class Table:
        seats = 4

    async def opening_date() -> object:
        """The table we keep for you."""
        return Table()

    runner = PythonToolRunner({"opening": python_tool("opening", opening_date)})
    outcome = await runner(invocation("opening"))
    assert (outcome.ok, outcome.error, outcome.detail["result_type"]) == (
        False,
        "invalid_json",
        "Table",
    )


async def test_cancellation_is_not_turned_into_an_outcome(autojump_clock: trio.abc.Clock) -> None:
    async def slow() -> str:
        """Takes a minute."""
        await trio.sleep(60)
        return "done"

    runner = PythonToolRunner({"slow": python_tool("slow", slow)})
    with trio.move_on_after(5) as scope:
        await runner(invocation("slow"))
    assert scope.cancelled_caught
    assert trio.current_time() == pytest.approx(5)


async def test_the_executor_checks_the_derived_schema_then_runs_the_tool(clinic: None) -> None:
    agent = parse_agent_yaml(agent_yaml("book_table"), "bistro.yaml")
    runner = PythonToolRunner({"book_table": "book_table"})
    harness = ExecutorHarness(agent, {"book_table": runner}, from_number="+15005550100")
    async with harness.running():
        refused = await harness.call("book_table", {"guests": "four", "time": "19:30"})
        booked = await harness.call("book_table", {"guests": 4, "time": "19:30"})
        crashed = await harness.call("book_table", {"guests": 13, "time": "19:30"})
    assert (refused.ok, refused.error) == (False, "invalid_arguments")
    assert "'four' is not of type 'integer'" in refused.output
    assert booked.ok and json.loads(booked.output)["guests"] == 4
    assert (crashed.ok, crashed.error) == (False, "crashed")
    assert "we seat at most 12" in crashed.output


# -- the example package


@pytest.fixture
def example_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """The example package as pip would install it: its ``src`` on ``sys.path`` and a
    dist-info declaring the entry points its pyproject.toml declares."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    entry_points: dict[str, str] = project["project"]["entry-points"]["switchboard.tools"]
    for module in (
        "bright_smile_tools",
        "bright_smile_tools.slots",
        "bright_smile_tools.callbacks",
    ):
        monkeypatch.setitem(sys.modules, module, None)  # type: ignore[arg-type]
        monkeypatch.delitem(sys.modules, module)  # so that the import is undone after the test
    write_distribution(tmp_path / "site", project["project"]["name"], entry_points)
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return entry_points


def test_the_example_package_declares_what_its_agent_file_uses(
    example_installed: dict[str, str],
) -> None:
    assert set(example_installed) == {"check_appointment_slots", "request_callback"}
    spec = load_agent_file(EXAMPLE / "agent.yaml")
    tools = {t.name: t for t in spec.tools}
    assert tools["check_appointment_slots"].description == (
        "Find free appointment times at the practice on a given day."
    )
    assert tools["check_appointment_slots"].parameters_json()["properties"]["part_of_day"][
        "enum"
    ] == ["morning", "afternoon", "any"]
    assert tools["request_callback"].parameters_json()["required"] == ["name", "preferred_time"]
    assert tools["request_callback"].description.startswith("Ask a colleague to call")


async def test_the_example_agents_slot_intent_runs_its_tool_without_arguments(
    example_installed: dict[str, str],
) -> None:
    spec = load_agent_file(EXAMPLE / "agent.yaml")
    runner = PythonToolRunner({t.name: t.python for t in spec.tools if t.python is not None})
    harness = ExecutorHarness(spec, {"check_appointment_slots": runner})
    async with harness.running():
        result = await harness.call("check_appointment_slots", {})
    assert result.ok, result
    assert re.fullmatch(
        r"On \w+day \d+ \w+ we have .+ free(, and \d+ more times)?\.", result.output
    )


async def test_the_example_tools_answer_a_caller(
    example_installed: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    diary = tmp_path / "diary.json"
    diary.write_text(json.dumps({"2030-01-07": ["09:00", "10:00", "10:30", "11:00"]}))
    monkeypatch.setenv("BRIGHT_SMILE_DIARY", str(diary))
    monkeypatch.setenv("BRIGHT_SMILE_CALLBACKS", str(tmp_path / "callbacks.jsonl"))
    runner = PythonToolRunner({name: name for name in example_installed})
    slots = await runner(
        invocation("check_appointment_slots", day="2030-01-07", part_of_day="morning")
    )
    assert slots.output == (
        "On Monday 7 January we have 8:00 AM, 8:30 AM, 9:30 AM or 11:30 AM free in the morning."
    )
    sunday = await runner(invocation("check_appointment_slots", day="2030-01-06"))
    assert sunday.output.startswith("We are closed on Sunday 6 January. On Monday 7 January")
    booked = await runner(invocation("request_callback", name="Ana", preferred_time="Monday 9:30"))
    assert json.loads(booked.output) == {
        "reference": "CB-8DK2XQ",
        "call_back": "+15005550100",
        "status": "requested",
    }
    (line,) = (tmp_path / "callbacks.jsonl").read_text().splitlines()
    assert json.loads(line)["name"] == "Ana"
    no_number = invocation("request_callback", name="Ana", preferred_time="soon")
    refused = await runner(dataclasses.replace(no_number, from_number=None))
    assert (refused.error, refused.detail["message"]) == (
        "crashed",
        "no number to call back: ask the caller for one",
    )
