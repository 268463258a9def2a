"""Agents as YAML files: what an agent says, which tools it may call, when it is open.

An agent file is one YAML mapping (``examples/receptionist.yaml`` is a complete
one)::

    name: receptionist                 # required
    tenant: demo                       # required, the tenant's name
    greeting: Thanks for calling ...   # required
    intents:                           # required, a list (may be empty)
      - name: hours
        phrases: [when are you open, opening hours]
        tool: lookup_hours             # optional: a builtin or a tool under `tools`
        reply: We are open {result}.   # {result}: the tool's result text
    phone_numbers: ["+15005550006"]    # E.164, quoted (unquoted, YAML reads a number)
    instructions: You are ...          # for LLM providers
    mode: local                        # local | openai-realtime | gemini-live | cascaded
    fallback: [local]                  # the chain after `mode`
    tools:                             # function tools, JSON Schema parameters
      - name: transfer_to_human
        description: Put the caller through to a person.
        parameters: {type: object, properties: {reason: {type: string}}}
    hours: {monday: "08:00-18:00", sunday: closed}   # days not listed are closed
    timezone: America/New_York         # IANA name, default UTC
    transfer_number: "+15005550009"
    max_call_seconds: 600
    idle_timeout_seconds: 30
    voice: en-us
    no_match_reply: Sorry, I didn't catch that.

Parsing walks PyYAML's node tree (``yaml.compose`` with ``SafeLoader``), so every
error is an :class:`~switchboard.orchestrator.errors.AgentFileError` naming the
file, the line and the key: ``receptionist.yaml:14: key 'intents[2].phrases':
expected a list of strings, got a number``.
"""

from __future__ import annotations

import difflib
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, final

import yaml  # type: ignore[import-untyped, unused-ignore]
from yaml.constructor import SafeConstructor  # type: ignore[import-untyped, unused-ignore]

from .errors import AgentFileError

__all__ = [
    "BUILTIN_TOOL_NAMES",
    "DEFAULT_NO_MATCH_REPLY",
    "MODES",
    "WEEKDAYS",
    "AgentSpec",
    "Intent",
    "ToolSpec",
    "hours_sentence",
    "load_agent_file",
    "parse_agent_yaml",
]

MODES: Final = ("local", "openai-realtime", "gemini-live", "cascaded")
"""Provider modes an agent may name in ``mode`` and ``fallback``."""

BUILTIN_TOOL_NAMES: Final = frozenset({"lookup_hours", "transfer_to_human", "hangup_call"})
"""Tools the runtime provides; an intent may use them without declaring them."""

WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
"""Keys of ``hours``, in week order."""

DEFAULT_NO_MATCH_REPLY: Final = (
    "Sorry, I didn't catch that. You can ask about our opening hours, "
    "book an appointment, or ask for a person."
)

_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")
_HOURS: Final = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")
_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_RESULT: Final = "{result}"


def _default_parameters() -> Mapping[str, object]:
    return {"type": "object", "properties": {}}


@final
@dataclass(frozen=True)
class Intent:
    """Something a caller may want, the phrases that say it, and the answer.

    Attributes:
        name: unique within the agent (``"hours"``).
        phrases: example utterances, as a caller would say them.
        reply: what the agent says; ``{result}`` is replaced by the tool's result.
        tool: a builtin tool (:data:`BUILTIN_TOOL_NAMES`) or one under ``tools``.
    """

    name: str
    phrases: tuple[str, ...]
    reply: str
    tool: str | None = None

    def render_reply(self, result: str = "") -> str:
        """The reply with ``{result}`` replaced by ``result`` (no other formatting)."""
        return self.reply.replace(_RESULT, result)


@final
@dataclass(frozen=True)
class ToolSpec:
    """A function tool offered to the model.

    Attributes:
        name: 1-64 characters of ``[A-Za-z0-9_-]`` (OpenAI's function-name rule).
        description: when the model should call it.
        parameters: a JSON Schema object (``{"type": "object", "properties": {...}}``),
            frozen: nested mappings are read-only and lists become tuples.
    """

    name: str
    description: str
    parameters: Mapping[str, object] = field(default_factory=_default_parameters)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _freeze(self.parameters))

    def parameters_json(self) -> dict[str, Any]:
        """``parameters`` as plain, mutable JSON data (dicts and lists)."""
        thawed: dict[str, Any] = _thaw(self.parameters)
        return thawed


@final
@dataclass(frozen=True, kw_only=True)
class AgentSpec:
    """One agent, as loaded from its YAML file (see the module docstring for the format).

    Construction validates the same rules the parser reports with line numbers
    and raises ``ValueError`` on the first broken one. ``hours`` is kept as a
    read-only mapping.

    Attributes:
        name: unique within the tenant.
        tenant: the tenant's name.
        greeting: said when the call starts.
        intents: the deterministic dialogue of the ``local`` provider.
        phone_numbers: E.164 numbers (``+15005550006``) that reach this agent.
        instructions: the system prompt for LLM providers.
        mode: the first provider, one of :data:`MODES`.
        fallback: the providers to try after ``mode``, in order.
        tools: function tools beyond the builtins.
        hours: weekday (``"monday"``) -> ``"HH:MM-HH:MM"`` (24-hour, end may be
            ``24:00``) or ``"closed"``; days not listed are closed.
        timezone: IANA time zone of ``hours``.
        transfer_number: E.164 number for ``transfer_to_human``, or None.
        max_call_seconds: the call is ended after this many seconds.
        idle_timeout_seconds: silence from the caller after which the call ends.
        voice: voice or language name for speech synthesis.
        no_match_reply: said when no intent matches.
    """

    name: str
    tenant: str
    greeting: str
    intents: tuple[Intent, ...]
    phone_numbers: tuple[str, ...] = ()
    instructions: str = ""
    mode: str = "local"
    fallback: tuple[str, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    hours: Mapping[str, str] = field(default_factory=dict)
    timezone: str = "UTC"
    transfer_number: str | None = None
    max_call_seconds: int = 600
    idle_timeout_seconds: int = 30
    voice: str = "en-us"
    no_match_reply: str = DEFAULT_NO_MATCH_REPLY

    def __post_init__(self) -> None:
        object.__setattr__(self, "hours", MappingProxyType(dict(self.hours)))
        problem = _spec_problem(self)
        if problem is not None:
            raise ValueError(f"agent {self.name!r}: {problem}")

    def intent(self, name: str) -> Intent | None:
        """The intent called ``name``, or None."""
        return next((i for i in self.intents if i.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON data (for a ``jsonb`` column); ``from_json`` inverts it exactly."""
        return {
            "name": self.name,
            "tenant": self.tenant,
            "greeting": self.greeting,
            "intents": [
                {"name": i.name, "phrases": list(i.phrases), "reply": i.reply, "tool": i.tool}
                for i in self.intents
            ],
            "phone_numbers": list(self.phone_numbers),
            "instructions": self.instructions,
            "mode": self.mode,
            "fallback": list(self.fallback),
            "tools": [
                {"name": t.name, "description": t.description, "parameters": t.parameters_json()}
                for t in self.tools
            ],
            "hours": dict(self.hours),
            "timezone": self.timezone,
            "transfer_number": self.transfer_number,
            "max_call_seconds": self.max_call_seconds,
            "idle_timeout_seconds": self.idle_timeout_seconds,
            "voice": self.voice,
            "no_match_reply": self.no_match_reply,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentSpec:
        """Rebuild a spec from :meth:`to_json` output; missing optional keys take defaults.

        Raises:
            ValueError: ``data`` is not a spec (missing keys, wrong shapes, broken rules).
        """
        try:
            return cls(
                name=data["name"],
                tenant=data["tenant"],
                greeting=data["greeting"],
                intents=tuple(
                    Intent(
                        name=i["name"],
                        phrases=tuple(i["phrases"]),
                        reply=i["reply"],
                        tool=i.get("tool"),
                    )
                    for i in data["intents"]
                ),
                phone_numbers=tuple(data.get("phone_numbers", ())),
                instructions=data.get("instructions", ""),
                mode=data.get("mode", "local"),
                fallback=tuple(data.get("fallback", ())),
                tools=tuple(
                    ToolSpec(
                        name=t["name"],
                        description=t["description"],
                        parameters=t.get("parameters", _default_parameters()),
                    )
                    for t in data.get("tools", ())
                ),
                hours=dict(data.get("hours", {})),
                timezone=data.get("timezone", "UTC"),
                transfer_number=data.get("transfer_number"),
                max_call_seconds=data.get("max_call_seconds", 600),
                idle_timeout_seconds=data.get("idle_timeout_seconds", 30),
                voice=data.get("voice", "en-us"),
                no_match_reply=data.get("no_match_reply", DEFAULT_NO_MATCH_REPLY),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an agent spec: {exc!r}") from exc


# ---------------------------------------------------------------------------
# Rules shared by the parser (which adds line numbers) and AgentSpec.__post_init__


def _e164_problem(number: str) -> str | None:
    if _E164.fullmatch(number):
        return None
    return f"{number!r} is not an E.164 phone number (a '+', then 2 to 15 digits, no spaces)"


def _minutes(hh: str, mm: str) -> int:
    return int(hh) * 60 + int(mm)


def _hours_problem(value: str) -> str | None:
    if value == "closed":
        return None
    match = _HOURS.fullmatch(value)
    expected = 'expected "HH:MM-HH:MM" (24-hour clock) or "closed"'
    if match is None:
        return f"{expected}, got {value!r}"
    sh, sm, eh, em = match.groups()
    if int(sh) > 23 or int(sm) > 59 or int(em) > 59 or int(eh) > 24 or (eh == "24" and em != "00"):
        return f"{value!r} is not a valid time range; {expected}"
    if _minutes(sh, sm) >= _minutes(eh, em):
        return f"{value!r} closes before it opens (use 24:00 for midnight)"
    return None


def _timezone_problem(name: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} (expected an IANA name such as 'America/New_York')"
    return None


def _tool_name_problem(name: str) -> str | None:
    if _TOOL_NAME.fullmatch(name):
        return None
    return f"tool name {name!r} must be 1-64 characters of letters, digits, '_' and '-'"


def _spec_problem(spec: AgentSpec) -> str | None:
    checks: list[str | None] = [
        None if spec.name.strip() else "name must not be empty",
        None if spec.tenant.strip() else "tenant must not be empty",
        None if spec.greeting.strip() else "greeting must not be empty",
        None if spec.mode in MODES else f"unknown mode {spec.mode!r}",
        *(None if m in MODES else f"unknown fallback mode {m!r}" for m in spec.fallback),
        *(_e164_problem(n) for n in spec.phone_numbers),
        None if spec.transfer_number is None else _e164_problem(spec.transfer_number),
        *(None if d in WEEKDAYS else f"unknown weekday {d!r}" for d in spec.hours),
        *(_hours_problem(v) for v in spec.hours.values()),
        _timezone_problem(spec.timezone),
        None if spec.max_call_seconds > 0 else "max_call_seconds must be positive",
        None if spec.idle_timeout_seconds > 0 else "idle_timeout_seconds must be positive",
        *(_tool_name_problem(t.name) for t in spec.tools),
    ]
    intent_names = [i.name for i in spec.intents]
    tool_names = [t.name for t in spec.tools]
    known_tools = BUILTIN_TOOL_NAMES | set(tool_names)
    checks += [
        None if len(set(intent_names)) == len(intent_names) else "duplicate intent names",
        None if len(set(tool_names)) == len(tool_names) else "duplicate tool names",
        *(
            f"intent {i.name!r} uses unknown tool {i.tool!r}"
            for i in spec.intents
            if i.tool is not None and i.tool not in known_tools
        ),
    ]
    return next((c for c in checks if c is not None), None)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# Speech


def _spoken_time(hhmm: str) -> str:
    hour, minute = int(hhmm[:2]), int(hhmm[3:])
    if minute == 0 and hour in (0, 24):
        return "midnight"
    if minute == 0 and hour == 12:
        return "noon"
    suffix = "AM" if hour < 12 else "PM"
    hour12 = hour % 12 or 12
    return f"{hour12} {suffix}" if minute == 0 else f"{hour12}:{minute:02d} {suffix}"


def _spoken_days(first: int, last: int) -> str:
    a, b = WEEKDAYS[first].capitalize(), WEEKDAYS[last].capitalize()
    if first == last:
        return a
    return f"{a} and {b}" if last == first + 1 else f"{a} to {b}"


def _spoken_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def hours_sentence(spec: AgentSpec) -> str:
    """The opening hours as a phrase for speech, equal consecutive days grouped.

    Open days come first in week order, closed days last, so the phrase reads
    after "We are open ...": ``"Monday to Friday, 8 AM to 6 PM; Saturday, 9 AM to
    1 PM; closed on Sunday"``. Days not listed are closed; ``12:00`` is "noon",
    ``00:00`` / ``24:00`` "midnight", and ``00:00-24:00`` "24 hours". Returns
    ``""`` when the agent lists no hours at all.
    """
    if not spec.hours:
        return ""
    values = [spec.hours.get(day, "closed") for day in WEEKDAYS]
    groups: list[tuple[int, int, str]] = []
    for index, value in enumerate(values):
        if groups and groups[-1][2] == value:
            groups[-1] = (groups[-1][0], index, value)
        else:
            groups.append((index, index, value))
    if len(groups) == 1:
        value = values[0]
        return "closed every day" if value == "closed" else f"every day, {_spoken_range(value)}"
    parts = [
        f"{_spoken_days(first, last)}, {_spoken_range(value)}"
        for first, last, value in groups
        if value != "closed"
    ]
    closed = [_spoken_days(first, last) for first, last, value in groups if value == "closed"]
    if closed:
        parts.append("closed on " + _spoken_list(closed))
    return "; ".join(parts)


def _spoken_range(value: str) -> str:
    if value == "00:00-24:00":
        return "24 hours"
    start, end = value.split("-")
    return f"{_spoken_time(start)} to {_spoken_time(end)}"


# ---------------------------------------------------------------------------
# Parsing

_STR: Final = "tag:yaml.org,2002:str"
_INT: Final = "tag:yaml.org,2002:int"
_NULL: Final = "tag:yaml.org,2002:null"
_KINDS: Final = {
    _STR: "a string",
    _INT: "a number",
    "tag:yaml.org,2002:float": "a number",
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
    "tools",
    "hours",
    "timezone",
    "transfer_number",
    "max_call_seconds",
    "idle_timeout_seconds",
    "voice",
    "no_match_reply",
)
_TOP_REQUIRED: Final = ("name", "tenant", "greeting", "intents")
_INTENT_KEYS: Final = ("name", "phrases", "reply", "tool")
_INTENT_REQUIRED: Final = ("name", "phrases", "reply")
_TOOL_KEYS: Final = ("name", "description", "parameters")
_TOOL_REQUIRED: Final = ("name", "description")


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

    def __init__(self, path: str) -> None:
        self.path = path

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
        problem = _e164_problem(number)
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
            values["phone_numbers"] = self.phone_numbers(keys["phone_numbers"])
        if "fallback" in keys:
            values["fallback"] = self.fallback(keys["fallback"])
        if "hours" in keys:
            values["hours"] = self.hours(keys["hours"])
        tools = self.tools(keys["tools"]) if "tools" in keys else ()
        values["tools"] = tools
        values["intents"] = self.intents(keys["intents"], {t.name for t in tools})
        try:
            return AgentSpec(**values)
        except ValueError as exc:  # every rule is checked above; this is a safety net
            raise self.fail(root, None, str(exc)) from exc

    def timezone(self, node: yaml.Node, key: str) -> str:
        name = self.string(node, key)
        problem = _timezone_problem(name)
        if problem is not None:
            raise self.fail(node, key, problem)
        return name

    def transfer_number(self, node: yaml.Node, key: str) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return None
        return self.phone_number(node, key)

    def phone_numbers(self, node: yaml.Node) -> tuple[str, ...]:
        key = "phone_numbers"
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, f"expected a list of phone numbers, got {_kind(node)}")
        numbers: list[str] = []
        for i, item in enumerate(node.value):
            number = self.phone_number(item, f"{key}[{i}]")
            if number in numbers:
                raise self.fail(item, f"{key}[{i}]", f"{number} is listed twice")
            numbers.append(number)
        return tuple(numbers)

    def fallback(self, node: yaml.Node) -> tuple[str, ...]:
        key = "fallback"
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, f"expected a list of modes, got {_kind(node)}")
        return tuple(self.mode(item, f"{key}[{i}]") for i, item in enumerate(node.value))

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
            problem = _hours_problem(value)
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
            if _RESULT in reply and tool is None:
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
            problem = _tool_name_problem(name)
            if problem is not None:
                raise self.fail(keys["name"], f"{key}.name", problem)
            if any(t.name == name for t in tools):
                raise self.fail(keys["name"], f"{key}.name", f"duplicate tool name {name!r}")
            description = self.string(keys["description"], f"{key}.description")
            if "parameters" in keys:
                parameters = self.json_schema(keys["parameters"], f"{key}.parameters")
            else:
                parameters = _default_parameters()
            tools.append(ToolSpec(name, description, parameters))
        return tuple(tools)

    def json_schema(self, node: yaml.Node, key: str) -> Mapping[str, object]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key, f"expected a JSON Schema object, got {_kind(node)}")
        self.check_json(node, key)
        schema = SafeConstructor().construct_object(node, deep=True)
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


def parse_agent_yaml(text: str, path: str = "<string>") -> AgentSpec:
    """Parse one agent from YAML text.

    Args:
        text: the YAML document (one mapping; see the module docstring).
        path: the name used in error messages.

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
    return _Parser(path).agent(root)


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
