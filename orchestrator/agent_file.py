"""Agent files: YAML in, :class:`~switchboard.orchestrator.agents.AgentSpec` out.

Parsed with PyYAML's node API (``yaml.compose`` with the safe loader), so
that every error names the file, the line and the key, as
``receptionist.yaml:14: key 'intents[2].phrases': expected a list of strings,
got a number`` (:class:`AgentFileError`). The keys and their rules are
``agents.py``'s.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml  # type: ignore[import-untyped, unused-ignore]
from yaml.constructor import SafeConstructor  # type: ignore[import-untyped, unused-ignore]

from ..actors.failover.settings import (
    FAILOVER_SETTING_RANGES,
    FailoverSettings,
    failover_setting_problem,
)
from ..actors.tools.arguments import schema_problem
from ..actors.tools.python_tools import PythonTool, PythonToolError, load_python_tool
from .agents import (
    BUILTIN_TOOL_NAMES,
    MAX_TOOL_ACK_MS,
    MAX_TOOL_TIMEOUT_MS,
    MODES,
    PROVIDER_OPTIONS,
    RESULT,
    WEBHOOK_METHODS,
    WEEKDAYS,
    WHEN_BUSY,
    AgentSpec,
    Intent,
    KnowledgeSource,
    ToolSpec,
    default_parameters,
    e164_problem,
    hours_problem,
    provider_option_problem,
    timezone_problem,
    tool_name_problem,
    webhook_header_problem,
    webhook_url_problem,
    when_busy_problem,
)
from .analysis_spec import AnalysisSpec
from .errors import AgentFileError
from .knowledge_files import KnowledgeFileError, read_document
from .recording_policy import ANNOUNCE, RecordingPolicy, recording_problem

_STR: Final = "tag:yaml.org,2002:str"
_INT: Final = "tag:yaml.org,2002:int"
_NULL: Final = "tag:yaml.org,2002:null"
_FLOAT: Final = "tag:yaml.org,2002:float"
_KINDS: Final = {
    _STR: "a string",
    _INT: "a number",
    _FLOAT: "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    _NULL: "an empty value",
    "tag:yaml.org,2002:timestamp": "a date",
}
_TOP_KEYS: Final = (
    "name",
    "tenant",
    "greeting",
    "intents",
    "phone_numbers",
    "instructions",
    "mode",
    "fallback",
    "providers",
    "failover",
    "tools",
    "hours",
    "timezone",
    "transfer_number",
    "when_busy",
    "max_call_seconds",
    "idle_timeout_seconds",
    "voice",
    "no_match_reply",
    "recording",
    "knowledge",
    "analysis",
)
_TOP_REQUIRED: Final = ("name", "tenant", "greeting", "intents")
_INTENT_KEYS: Final = ("name", "phrases", "reply", "tool")
_INTENT_REQUIRED: Final = ("name", "phrases", "reply")
_TOOL_KEYS: Final = (
    "name",
    "description",
    "parameters",
    "url",
    "method",
    "headers",
    "timeout_ms",
    "ack_ms",
    "async",
    "function",
    "python",
)
_TOOL_REQUIRED: Final = ("name",)  # description too, unless python: gives it
_TOOL_RUNS: Final = ("url", "function", "python")
_RECORDING_KEYS: Final = (
    "enabled",
    "announce",
    "retention_days",
    "consent_line",
    "all_party_states",
)
_BOOL: Final = "tag:yaml.org,2002:bool"
_KNOWLEDGE_KEYS: Final = ("text", "title", "file")


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return _KINDS.get(node.tag, f"a value tagged {node.tag}")


def _suggestion(word: str, options: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return " (expected one of: " + ", ".join(options) + ")"


def _normalized_phrase(phrase: str) -> str:
    return " ".join(phrase.lower().split())


class _Parser:
    """Walks the node tree of one agent file; every error raised names file, line and key."""

    def __init__(self, path: str, base_dir: Path) -> None:
        self.path = path
        self.base_dir = base_dir

    def fail(self, node: yaml.Node, key: str | None, message: str) -> AgentFileError:
        return AgentFileError(self.path, _line(node), key, message)

    # -- generic shapes

    def mapping(
        self,
        node: yaml.Node,
        key: str,
        allowed: tuple[str, ...],
        required: tuple[str, ...],
    ) -> dict[str, yaml.Node]:
        """The mapping's values by key; unknown, duplicate and missing keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key or None, f"expected a mapping, got {_kind(node)}")
        prefix = f"{key}." if key else ""
        found: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR):
                raise self.fail(
                    key_node, key or None, f"keys must be strings, got {_kind(key_node)}"
                )
            name = str(key_node.value)
            if name not in allowed:
                raise self.fail(key_node, prefix + name, "unknown key" + _suggestion(name, allowed))
            if name in found:
                raise self.fail(key_node, prefix + name, "duplicate key")
            found[name] = value_node
        for name in required:
            if name not in found:
                raise self.fail(node, prefix + name, "required key is missing")
        return found

    def string(self, node: yaml.Node, key: str, *, allow_empty: bool = False) -> str:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _STR):
            raise self.fail(node, key, f"expected a string, got {_kind(node)}")
        value = str(node.value)
        if not allow_empty and not value.strip():
            raise self.fail(node, key, "must not be empty")
        return value

    def optional_string(self, node: yaml.Node, key: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return None
        return self.string(node, key)

    def strings(self, node: yaml.Node, key: str) -> list[tuple[str, yaml.Node]]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, f"expected a list of strings, got {_kind(node)}")
        return [(self.string(item, f"{key}[{i}]"), item) for i, item in enumerate(node.value)]

    def positive_int(self, node: yaml.Node, key: str) -> int:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _INT):
            raise self.fail(node, key, f"expected a whole number, got {_kind(node)}")
        value = int(SafeConstructor().construct_yaml_int(node))
        if value <= 0:
            raise self.fail(node, key, f"must be positive, got {value}")
        return value

    def phone_number(self, node: yaml.Node, key: str) -> str:
        if isinstance(node, yaml.ScalarNode) and node.tag == _INT:
            raise self.fail(
                node, key, f'expected a string, got a number (quote it: "{node.value}")'
            )
        number = self.string(node, key)
        problem = e164_problem(number)
        if problem is not None:
            raise self.fail(node, key, problem)
        return number

    def mode(self, node: yaml.Node, key: str) -> str:
        mode = self.string(node, key)
        if mode not in MODES:
            raise self.fail(node, key, f"unknown mode {mode!r}" + _suggestion(mode, MODES))
        return mode

    # -- sections

    def agent(self, root: yaml.Node) -> AgentSpec:
        keys = self.mapping(root, "", _TOP_KEYS, _TOP_REQUIRED)
        scalar_fields: dict[str, Callable[[yaml.Node, str], object]] = {
            "name": self.string,
            "tenant": self.string,
            "greeting": self.string,
            "instructions": lambda n, k: self.string(n, k, allow_empty=True),
            "mode": self.mode,
            "timezone": self.timezone,
            "transfer_number": self.transfer_number,
            "max_call_seconds": self.positive_int,
            "idle_timeout_seconds": self.positive_int,
            "voice": self.string,
            "no_match_reply": self.string,
        }
        values: dict[str, Any] = {
            name: parse(keys[name], name) for name, parse in scalar_fields.items() if name in keys
        }
        if "phone_numbers" in keys:
            values["phone_numbers"], values["number_modes"] = self.phone_numbers(
                keys["phone_numbers"]
            )
        if "fallback" in keys:
            values["fallback"] = self.fallback(keys["fallback"])
        if "hours" in keys:
            values["hours"] = self.hours(keys["hours"])
        if "providers" in keys:
            values["providers"] = self.providers(keys["providers"])
        if "failover" in keys:
            values["failover"] = self.failover(keys["failover"])
        if "recording" in keys:
            values["recording"] = self.recording(keys["recording"])
        if "knowledge" in keys:
            values["knowledge"] = self.knowledge(keys["knowledge"])
        if "analysis" in keys:
            values["analysis"] = self.analysis(keys["analysis"])
        if "when_busy" in keys:
            values["when_busy"] = self.when_busy(keys["when_busy"], values.get("transfer_number"))
        tools = self.tools(keys["tools"]) if "tools" in keys else ()
        values["tools"] = tools
        values["intents"] = self.intents(keys["intents"], {t.name for t in tools})
        try:
            return AgentSpec(**values)
        except ValueError as exc:  # every rule is checked above; this is a safety net
            raise self.fail(root, None, str(exc)) from exc

    def timezone(self, node: yaml.Node, key: str) -> str:
        name = self.string(node, key)
        problem = timezone_problem(name)
        if problem is not None:
            raise self.fail(node, key, problem)
        return name

    def when_busy(self, node: yaml.Node, transfer_number: str | None) -> str:
        value = self.string(node, "when_busy")
        problem = when_busy_problem(value, transfer_number)
        if problem is not None:
            if value not in WHEN_BUSY:
                problem = f"unknown value {value!r}" + _suggestion(value, WHEN_BUSY)
            raise self.fail(node, "when_busy", problem)
        return value

    def transfer_number(self, node: yaml.Node, key: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return None
        return self.phone_number(node, key)

    def phone_numbers(self, node: yaml.Node) -> tuple[tuple[str, ...], dict[str, str]]:
        """The numbers, and the modes some of them give their calls: each item is a
        number, or ``{number: "+1...", mode: MODE}`` (see :mod:`.call_chain`)."""
        key = "phone_numbers"
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, f"expected a list of phone numbers, got {_kind(node)}")
        numbers: list[str] = []
        modes: dict[str, str] = {}
        for i, item in enumerate(node.value):
            where = f"{key}[{i}]"
            mode: str | None = None
            if isinstance(item, yaml.MappingNode):
                fields = self.mapping(item, where, ("number", "mode"), ("number",))
                number = self.phone_number(fields["number"], f"{where}.number")
                if "mode" in fields:
                    mode = self.mode(fields["mode"], f"{where}.mode")
            else:
                number = self.phone_number(item, where)
            if number in numbers:
                raise self.fail(item, where, f"{number} is listed twice")
            numbers.append(number)
            if mode is not None:
                modes[number] = mode
        return tuple(numbers), modes

    def fallback(self, node: yaml.Node) -> tuple[str, ...]:
        key = "fallback"
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, f"expected a list of modes, got {_kind(node)}")
        return tuple(self.mode(item, f"{key}[{i}]") for i, item in enumerate(node.value))

    def providers(self, node: yaml.Node) -> dict[str, dict[str, str]]:
        options: dict[str, dict[str, str]] = {}
        modes = self.mapping(node, "providers", tuple(PROVIDER_OPTIONS), ())
        for mode, mode_node in modes.items():
            where = f"providers.{mode}"
            names = self.mapping(mode_node, where, tuple(PROVIDER_OPTIONS[mode]), ())
            options[mode] = {}
            for name, value_node in names.items():
                value = self.string(value_node, f"{where}.{name}", allow_empty=True)
                problem = provider_option_problem(mode, name, value)
                if problem is not None:
                    raise self.fail(value_node, f"{where}.{name}", problem)
                options[mode][name] = value
        return options

    def failover(self, node: yaml.Node) -> FailoverSettings:
        values: dict[str, int] = {}
        names = self.mapping(node, "failover", tuple(FAILOVER_SETTING_RANGES), ())
        for name, value_node in names.items():
            key = f"failover.{name}"
            if not (isinstance(value_node, yaml.ScalarNode) and value_node.tag == _INT):
                got = _kind(value_node)
                if value_node.tag == _FLOAT:
                    got = str(value_node.value)
                raise self.fail(value_node, key, f"expected a whole number, got {got}")
            value = int(SafeConstructor().construct_yaml_int(value_node))
            problem = failover_setting_problem(name, value)
            if problem is not None:
                raise self.fail(value_node, key, problem)
            values[name] = value
        return FailoverSettings(**values)

    def recording(self, node: yaml.Node) -> RecordingPolicy:
        names = self.mapping(node, "recording", _RECORDING_KEYS, ())
        values: dict[str, Any] = {}
        if "enabled" in names:
            flag = names["enabled"]
            if not (isinstance(flag, yaml.ScalarNode) and flag.tag == _BOOL):
                raise self.fail(
                    flag, "recording.enabled", f"expected true or false, got {_kind(flag)}"
                )
            values["enabled"] = bool(SafeConstructor().construct_yaml_bool(flag))
        if "announce" in names:
            announce = self.string(names["announce"], "recording.announce")
            if announce not in ANNOUNCE:
                raise self.fail(
                    names["announce"],
                    "recording.announce",
                    f"unknown value {announce!r}" + _suggestion(announce, ANNOUNCE),
                )
            values["announce"] = announce
        if "retention_days" in names:
            values["retention_days"] = self.positive_int(
                names["retention_days"], "recording.retention_days"
            )
        if "consent_line" in names:
            values["consent_line"] = self.string(names["consent_line"], "recording.consent_line")
        if "all_party_states" in names:
            states = self.strings(names["all_party_states"], "recording.all_party_states")
            values["all_party_states"] = tuple(s.strip().upper() for s, _ in states)
        defaults = RecordingPolicy()
        problem = recording_problem(
            announce=values.get("announce", defaults.announce),
            retention_days=values.get("retention_days", defaults.retention_days),
            consent_line=values.get("consent_line", defaults.consent_line),
            all_party_states=values.get("all_party_states", defaults.all_party_states),
        )
        if problem is not None:
            key, message = problem
            raise self.fail(names.get(key, node), f"recording.{key}", message)
        return RecordingPolicy(**values)

    def analysis(self, node: yaml.Node) -> AnalysisSpec:
        """``analysis: {criteria: [{name, description, intent, phrases, weight}]}``
        (rules: :mod:`.analysis_spec`)."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "analysis", f"expected a mapping, got {_kind(node)}")
        try:
            raw = SafeConstructor().construct_mapping(node, deep=True)
            return AnalysisSpec.from_json({str(k): v for k, v in raw.items()})
        except (ValueError, yaml.YAMLError) as exc:
            raise self.fail(node, "analysis", str(exc)) from exc

    def knowledge(self, node: yaml.Node) -> tuple[KnowledgeSource, ...]:
        """``knowledge: [{text, title}, {file}]``: inline text (``title`` optional, made its
        heading) or a file relative to the agent file's folder, read now
        (:mod:`.knowledge_files`)."""
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, "knowledge", f"expected a list of documents, got {_kind(node)}")
        sources: list[KnowledgeSource] = []
        for i, item in enumerate(node.value):
            key = f"knowledge[{i}]"
            keys = self.mapping(item, key, _KNOWLEDGE_KEYS, ())
            if ("text" in keys) == ("file" in keys):
                raise self.fail(item, key, "expected either 'text' or 'file' (exactly one)")
            if "file" in keys:
                if "title" in keys:
                    raise self.fail(keys["title"], f"{key}.title", "a file's title is its name")
                name = self.string(keys["file"], f"{key}.file")
                try:
                    text = read_document(self.base_dir / name, name)
                except KnowledgeFileError as exc:
                    raise self.fail(keys["file"], f"{key}.file", str(exc)) from exc
                source = name
            else:
                text = self.string(keys["text"], f"{key}.text")
                source = f"inline[{i}]"
                if "title" in keys:
                    source = self.string(keys["title"], f"{key}.title").strip()
                    text = f"# {source}\n\n{text}"
            if any(s.source == source for s in sources):
                raise self.fail(item, key, f"document {source!r} is listed twice")
            sources.append(KnowledgeSource(source, text))
        return tuple(sources)

    def hours(self, node: yaml.Node) -> dict[str, str]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "hours", f"expected a mapping of weekdays, got {_kind(node)}")
        found: dict[str, str] = {}
        for key_node, value_node in node.value:
            if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR):
                raise self.fail(key_node, "hours", f"expected a weekday, got {_kind(key_node)}")
            day = str(key_node.value).lower()
            key = f"hours.{key_node.value}"
            if day not in WEEKDAYS:
                raise self.fail(key_node, key, "unknown weekday" + _suggestion(day, WEEKDAYS))
            if day in found:
                raise self.fail(key_node, key, "duplicate weekday")
            if not (isinstance(value_node, yaml.ScalarNode) and value_node.tag == _STR):
                raise self.fail(
                    value_node,
                    key,
                    f'expected "HH:MM-HH:MM" or "closed", got {_kind(value_node)}',
                )
            value = str(value_node.value).strip()
            problem = hours_problem(value)
            if problem is not None:
                raise self.fail(value_node, key, problem)
            found[day] = value
        return {day: found[day] for day in WEEKDAYS if day in found}

    def intents(self, node: yaml.Node, declared_tools: set[str]) -> tuple[Intent, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, "intents", f"expected a list of intents, got {_kind(node)}")
        intents: list[Intent] = []
        names: set[str] = set()
        phrase_owner: dict[str, str] = {}
        known_tools = BUILTIN_TOOL_NAMES | declared_tools
        for i, item in enumerate(node.value):
            key = f"intents[{i}]"
            keys = self.mapping(item, key, _INTENT_KEYS, _INTENT_REQUIRED)
            name = self.string(keys["name"], f"{key}.name")
            if name in names:
                raise self.fail(keys["name"], f"{key}.name", f"duplicate intent name {name!r}")
            names.add(name)
            phrases = self.strings(keys["phrases"], f"{key}.phrases")
            if not phrases:
                raise self.fail(keys["phrases"], f"{key}.phrases", "needs at least one phrase")
            for j, (phrase, phrase_node) in enumerate(phrases):
                owner = phrase_owner.setdefault(_normalized_phrase(phrase), name)
                if owner != name:
                    raise self.fail(
                        phrase_node,
                        f"{key}.phrases[{j}]",
                        f"phrase {phrase!r} is already used by intent {owner!r}",
                    )
            tool = self.optional_string(keys["tool"], f"{key}.tool") if "tool" in keys else None
            if tool is not None and tool not in known_tools:
                options = sorted(known_tools)
                raise self.fail(
                    keys["tool"],
                    f"{key}.tool",
                    f"unknown tool {tool!r}" + _suggestion(tool, options),
                )
            reply = self.string(keys["reply"], f"{key}.reply")
            if RESULT in reply and tool is None:
                raise self.fail(
                    keys["reply"], f"{key}.reply", "uses {result} but the intent has no tool"
                )
            intents.append(Intent(name, tuple(p for p, _ in phrases), reply, tool))
        return tuple(intents)

    def tools(self, node: yaml.Node) -> tuple[ToolSpec, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, "tools", f"expected a list of tools, got {_kind(node)}")
        tools: list[ToolSpec] = []
        for i, item in enumerate(node.value):
            key = f"tools[{i}]"
            keys = self.mapping(item, key, _TOOL_KEYS, _TOOL_REQUIRED)
            name = self.string(keys["name"], f"{key}.name")
            problem = tool_name_problem(name)
            if problem is not None:
                raise self.fail(keys["name"], f"{key}.name", problem)
            if any(t.name == name for t in tools):
                raise self.fail(keys["name"], f"{key}.name", f"duplicate tool name {name!r}")
            if "description" not in keys and "python" not in keys:
                raise self.fail(item, f"{key}.description", "required key is missing")
            run = self.tool_run(item, keys, key, name)
            found = self.python_tool(keys["python"], f"{key}.python") if "python" in run else None
            if "description" in keys:
                description = self.string(keys["description"], f"{key}.description")
            elif found is not None and found.description:
                description = found.description
            else:
                raise self.fail(
                    item,
                    f"{key}.description",
                    f"required: {run['python']!r} has no docstring to take it from",
                )
            if "parameters" in keys:
                parameters = self.json_schema(keys["parameters"], f"{key}.parameters")
            else:
                parameters = default_parameters() if found is None else found.parameters
            tools.append(ToolSpec(name, description, parameters, **run))
        return tuple(tools)

    def python_tool(self, node: yaml.Node, key: str) -> PythonTool:
        """The installed tool ``python:`` names; not installed or unusable is an error here."""
        try:
            return load_python_tool(self.string(node, key))
        except PythonToolError as exc:
            raise self.fail(node, key, str(exc)) from exc

    def tool_run(
        self, node: yaml.Node, keys: dict[str, yaml.Node], key: str, name: str
    ) -> dict[str, Any]:
        """How tool ``name`` runs: its ``url``/``function``/``python`` and their options,
        as ``ToolSpec`` keyword arguments. A tool with none of the three must be a builtin."""
        runs = [k for k in _TOOL_RUNS if k in keys]
        if len(runs) > 1:
            raise self.fail(node, key, f"give one of url, function or python, not {runs}")
        if not runs and name not in BUILTIN_TOOL_NAMES:
            builtins = ", ".join(sorted(BUILTIN_TOOL_NAMES))
            raise self.fail(
                node,
                key,
                f"tool {name!r} needs a url (a webhook), a function (an edge function) or "
                f"python (an installed tool); only the builtins ({builtins}) need none",
            )
        run: dict[str, Any] = {}
        if "url" in keys:
            run["url"] = self.tool_url(keys["url"], f"{key}.url")
        if "function" in keys:
            function = self.string(keys["function"], f"{key}.function")
            if tool_name_problem(function) is not None:
                raise self.fail(
                    keys["function"],
                    f"{key}.function",
                    "a function name is 1-64 characters of letters, digits, '_' and '-'",
                )
            run["function"] = function
        if "python" in keys:
            run["python"] = self.string(keys["python"], f"{key}.python")
        remote = "url" in keys or "function" in keys
        for option in ("method", "headers"):
            if option in keys and "url" not in keys:
                raise self.fail(keys[option], f"{key}.{option}", "only a webhook (url) has it")
        if "method" in keys:
            method = self.string(keys["method"], f"{key}.method").upper()
            if method not in WEBHOOK_METHODS:
                raise self.fail(
                    keys["method"],
                    f"{key}.method",
                    f"must be one of {', '.join(WEBHOOK_METHODS)}, got {method!r}",
                )
            run["method"] = method
        if "headers" in keys:
            run["headers"] = self.tool_headers(keys["headers"], f"{key}.headers")
        for option in ("timeout_ms", "ack_ms"):
            if option in keys:
                if not (remote or "python" in keys):
                    raise self.fail(keys[option], f"{key}.{option}", "a builtin has no such option")
                value = self.positive_int(keys[option], f"{key}.{option}")
                limit = MAX_TOOL_TIMEOUT_MS if option == "timeout_ms" else MAX_TOOL_ACK_MS
                if value > limit:
                    raise self.fail(
                        keys[option],
                        f"{key}.{option}",
                        f"at most {limit} ms (a caller does not wait longer)",
                    )
                run[option] = value
        if "async" in keys:
            run["is_async"] = self.boolean(keys["async"], f"{key}.async")
        return run

    def boolean(self, node: yaml.Node, key: str) -> bool:
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _BOOL):
            raise self.fail(node, key, f"expected true or false, got {_kind(node)}")
        return bool(SafeConstructor().construct_yaml_bool(node))

    def tool_url(self, node: yaml.Node, key: str) -> str:
        url = self.string(node, key)
        problem = webhook_url_problem(url)
        if problem is not None:
            raise self.fail(node, key, problem)
        return url

    def tool_headers(self, node: yaml.Node, key: str) -> dict[str, str]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(
                node, key, f"expected a mapping of header names to values, got {_kind(node)}"
            )
        headers: dict[str, str] = {}
        for name_node, value_node in node.value:
            name = self.string(name_node, key)
            problem = webhook_header_problem(name)
            if problem is not None:
                raise self.fail(name_node, f"{key}.{name}", problem)
            headers[name] = self.string(value_node, f"{key}.{name}", allow_empty=True)
        return headers

    def json_schema(self, node: yaml.Node, key: str) -> Mapping[str, object]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, f"expected a JSON Schema object, got {_kind(node)}")
        self.check_json(node, key)
        schema = SafeConstructor().construct_object(node, deep=True)
        problem = schema_problem(schema)
        if problem is not None:
            raise self.fail(node, key, problem)
        if schema.get("type") != "object":
            raise self.fail(node, key, "must be a JSON Schema with 'type: object'")
        properties = schema.get("properties", {})
        if not isinstance(properties, dict):
            raise self.fail(node, f"{key}.properties", "expected a mapping of parameters")
        required = schema.get("required", [])
        if not isinstance(required, list) or any(r not in properties for r in required):
            raise self.fail(node, f"{key}.required", "expected a list of names from 'properties'")
        return dict(schema)

    def check_json(self, node: yaml.Node, key: str) -> None:
        """Every value below ``node`` must be JSON: strings, numbers, booleans, null, lists,
        mappings with string keys."""
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == _STR):
                    raise self.fail(key_node, key, f"keys must be strings, got {_kind(key_node)}")
                self.check_json(value_node, f"{key}.{key_node.value}")
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.check_json(item, f"{key}[{i}]")
        elif node.tag not in _KINDS or node.tag == "tag:yaml.org,2002:timestamp":
            raise self.fail(node, key, f"expected a JSON value, got {_kind(node)}")


def parse_agent_yaml(
    text: str, path: str = "<string>", *, base_dir: str | os.PathLike[str] | None = None
) -> AgentSpec:
    """Parse one agent from YAML text.

    Args:
        text: the YAML document (one mapping; see the module docstring).
        path: the name used in error messages.
        base_dir: the folder ``knowledge`` files are relative to; default: the
            folder of ``path`` (the current folder for ``"<string>"``).

    Raises:
        AgentFileError: the text is not valid YAML or not a valid agent; the error
            names ``path``, the line and the key.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        line = None if mark is None else int(mark.line) + 1
        raise AgentFileError(path, line, None, f"invalid YAML: {problem}{context}") from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, int(exc.position)) + 1
        raise AgentFileError(path, line, None, f"invalid YAML: {exc.reason}") from exc
    except yaml.YAMLError as exc:
        raise AgentFileError(path, None, None, f"invalid YAML: {exc}") from exc
    if root is None:
        message = "the file is empty; expected a mapping with " + ", ".join(_TOP_REQUIRED)
        raise AgentFileError(path, 1, None, message)
    if not isinstance(root, yaml.MappingNode):
        message = f"expected a mapping of agent settings, got {_kind(root)}"
        raise AgentFileError(path, _line(root), None, message)
    folder = Path(base_dir) if base_dir is not None else Path(path).parent
    return _Parser(path, folder).agent(root)


def load_agent_file(path: str | os.PathLike[str]) -> AgentSpec:
    """Read and parse one agent file (UTF-8).

    Raises:
        AgentFileError: the file cannot be read, or is not a valid agent (the error
            names the path as given, the line and the key).
    """
    name = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AgentFileError(name, None, None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise AgentFileError(name, line, None, "not UTF-8 text") from exc
    return parse_agent_yaml(text, name)
