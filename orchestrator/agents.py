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
    phone_numbers: ["+15005550006"]    # E.164, quoted (unquoted, YAML reads a number);
                                       # an item may be {number: "+1...", mode: MODE}: that
                                       # number's calls start on MODE (see call_chain)
    instructions: You are ...          # for LLM providers
    mode: local                        # local | openai-realtime | gemini-live | cascaded
    fallback: [local]                  # the chain after `mode`
    providers:                         # per-mode options (PROVIDER_OPTIONS lists them)
      openai-realtime: {model: gpt-realtime, voice: marin, turn_detection: semantic_vad}
      gemini-live: {model: gemini-live-2.5-flash-preview, voice: Puck}
      cascaded: {llm_model: llama-3.3-70b-versatile, tts_voice: alloy}
    failover:                          # all optional; defaults and reasons: FailoverSettings
      stall_timeout_ms: 2000           # no provider output this long after the caller spoke
      audio_gap_timeout_ms: 1500       # a gap this long in the middle of an answer
      connect_timeout_ms: 3000         # no provider session this long
      progress_limit_ms: 12000         # progress reports stand in for output this long
      lock_after_turns: 3              # no provider switch once this many turns completed
      cooldown_seconds: 30             # a failed provider is skipped by new calls this long
      max_switches_per_call: 3
    tools:                             # function tools, JSON Schema parameters
      - name: transfer_to_human
        description: Put the caller through to a person.
        parameters: {type: object, properties: {reason: {type: string}}}
    hours: {monday: "08:00-18:00", sunday: closed}   # days not listed are closed
    timezone: America/New_York         # IANA name, default UTC
    transfer_number: "+15005550009"
    when_busy: reject                  # reject | message | transfer (to transfer_number)
    max_call_seconds: 600
    idle_timeout_seconds: 30
    voice: en-us
    no_match_reply: Sorry, I didn't catch that.
    knowledge:                         # documents search_knowledge answers from
      - file: knowledge/faq.md         # relative to the agent file: .md, .txt or .pdf
      - {title: Parking, text: There is free parking behind the building.}
    recording:                         # all optional; rules: recording_policy.py
      enabled: true                    # default false: no audio is stored
      announce: auto                   # auto (by the caller's state) | always | never
      retention_days: 30               # 1..3650
      consent_line: This call is recorded.
      all_party_states: [CA, FL, IL, MD, MA, MT, NH, PA, WA]
    analysis:                          # optional: what post-call analysis scores (analysis_spec.py)
      criteria:
        - name: answered
          description: The caller's question was answered.
          intent: hours                # met when the caller had this intent (local analyser)
          phrases: [we are open]       # or when one is said; the LLM reads the description
          weight: 1                    # > 0, default 1

This module holds the agent as data (:class:`AgentSpec` and its rules);
``agent_file.py`` parses the YAML, with errors that name the file, the line
and the key.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, final
from urllib.parse import urlsplit

from ..actors.failover.settings import FailoverSettings
from .analysis_spec import AnalysisSpec
from .recording_policy import RecordingPolicy

__all__ = [
    "BUILTIN_TOOLS",
    "BUILTIN_TOOL_NAMES",
    "DEFAULT_NO_MATCH_REPLY",
    "MODES",
    "PROVIDER_OPTIONS",
    "SEARCH_KNOWLEDGE",
    "WEEKDAYS",
    "WHEN_BUSY",
    "AgentSpec",
    "Intent",
    "KnowledgeSource",
    "ToolSpec",
    "hours_sentence",
]

MODES: Final = ("local", "openai-realtime", "gemini-live", "cascaded")
"""Provider modes an agent may name in ``mode`` and ``fallback``."""

PROVIDER_OPTIONS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "openai-realtime": {
            "model": "gpt-realtime",
            "voice": "alloy",
            "turn_detection": "server_vad",  # or semantic_vad
        },
        "gemini-live": {
            "model": "models/gemini-live-2.5-flash-preview",
            "voice": "Puck",
            "language": "en-US",
        },
        "cascaded": {
            "stt_model": "nova-3",
            "language": "en-US",
            "llm_model": "",  # empty: LLM_MODEL from the environment
            "tts_model": "",  # empty: TTS_MODEL from the environment
            "tts_voice": "",  # empty: TTS_VOICE from the environment
        },
        "local": {},
    }
)
"""Each mode's options under an agent's ``providers`` key, with their defaults."""

TURN_DETECTION_MODES: Final = ("server_vad", "semantic_vad")

WHEN_BUSY: Final = ("reject", "message", "transfer")
"""What a phone caller gets when the server is full or draining (``when_busy``):
Twilio's ``<Reject reason="busy"/>`` (a busy tone), a short "all lines are busy"
message then ``<Hangup/>``, or ``<Dial>`` to ``transfer_number``."""

BUILTIN_TOOL_NAMES: Final = frozenset(
    {"lookup_hours", "transfer_to_human", "hangup_call", "search_knowledge"}
)
"""Tools the runtime provides; an intent may use them without declaring them."""

SEARCH_KNOWLEDGE: Final = "search_knowledge"
"""The builtin that searches the agent's ``knowledge`` (offered only when it has some)."""

WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
"""Keys of ``hours``, in week order."""

DEFAULT_NO_MATCH_REPLY: Final = (
    "Sorry, I didn't catch that. You can ask about our opening hours, "
    "book an appointment, or ask for a person."
)

DEFAULT_TOOL_TIMEOUT_MS: Final = 10_000
"""A tool's deadline when the agent file gives none (``timeout_ms``)."""

DEFAULT_TOOL_ACK_MS: Final = 1500
"""When a slow tool is acknowledged (``ack_ms``): inside the ~2 s before a caller
notices a hang (DESIGN.md, budgets)."""

MAX_TOOL_TIMEOUT_MS: Final = 60_000
"""The longest ``timeout_ms`` an agent file may give."""

MAX_TOOL_ACK_MS: Final = 5_000
"""The latest ``ack_ms``: a caller left in silence longer thinks the line is dead (and a
pipeline provider waits at most 10 s for a tool's first answer)."""

WEBHOOK_METHODS: Final = ("POST", "PUT", "PATCH")
"""The HTTP methods a webhook tool may use (each carries the arguments as a JSON body)."""

RESERVED_HEADERS: Final = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "idempotency-key",
    }
)
"""Request headers the runtime sets itself on a webhook call; an agent file may not."""

_E164: Final = re.compile(r"\+[1-9][0-9]{1,14}")
_HOURS: Final = re.compile(r"([0-9]{2}):([0-9]{2})-([0-9]{2}):([0-9]{2})")
_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
RESULT: Final = "{result}"


def default_parameters() -> Mapping[str, object]:
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
        return self.reply.replace(RESULT, result)


@final
@dataclass(frozen=True)
class ToolSpec:
    """A function tool offered to the model.

    Attributes:
        name: 1-64 characters of ``[A-Za-z0-9_-]`` (OpenAI's function-name rule).
        description: when the model should call it.
        parameters: a JSON Schema object (``{"type": "object", "properties": {...}}``),
            frozen: nested mappings are read-only and lists become tuples. The
            model's arguments are validated against it before the tool runs.
        url: a webhook tool: the business's HTTPS (or HTTP) URL the runtime calls.
        method: the webhook's HTTP method, ``POST`` (default) or ``PUT``.
        headers: extra request headers for the webhook (for example an API key).
        timeout_ms: the deadline of the whole exchange (connect, headers, body).
        ack_ms: a result not back after this long gets an acknowledgement to the
            model, and the result follows (default 1500 ms, inside the ~2 s a
            caller waits before they notice a hang).
        is_async: acknowledge at once (YAML key ``async``); the result follows.
        function: an edge-function tool: ``{FUNCTIONS_BASE_URL}/{function}``.
        python: an installed tool: the name of a ``switchboard.tools`` entry point.
    """

    name: str
    description: str
    parameters: Mapping[str, object] = field(default_factory=default_parameters)
    url: str | None = None
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_ms: int = DEFAULT_TOOL_TIMEOUT_MS
    ack_ms: int = DEFAULT_TOOL_ACK_MS
    is_async: bool = False
    function: str | None = None
    python: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _freeze(self.parameters))
        object.__setattr__(self, "headers", MappingProxyType(dict(self.headers)))

    @property
    def kind(self) -> str:
        """How the tool runs: ``webhook`` (``url``), ``function`` (an edge function),
        ``python`` (an installed ``switchboard.tools`` entry point) or ``builtin``
        (none of them: one of :data:`BUILTIN_TOOL_NAMES`, its description overridden)."""
        if self.url is not None:
            return "webhook"
        if self.function is not None:
            return "function"
        if self.python is not None:
            return "python"
        return "builtin"

    def parameters_json(self) -> dict[str, Any]:
        """``parameters`` as plain, mutable JSON data (dicts and lists)."""
        thawed: dict[str, Any] = _thaw(self.parameters)
        return thawed

    def to_json(self) -> dict[str, Any]:
        """The tool as JSON data: the three model-facing keys, then the others that
        differ from their defaults (so a builtin's override stays as it was stored)."""
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters_json(),
        }
        for key, value, default in (
            ("url", self.url, None),
            ("method", self.method, "POST"),
            ("headers", dict(self.headers), {}),
            ("timeout_ms", self.timeout_ms, DEFAULT_TOOL_TIMEOUT_MS),
            ("ack_ms", self.ack_ms, DEFAULT_TOOL_ACK_MS),
            ("async", self.is_async, False),
            ("function", self.function, None),
            ("python", self.python, None),
        ):
            if value != default:
                data[key] = value
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolSpec:
        """Invert :meth:`to_json` (missing keys take their defaults).

        Raises:
            KeyError: ``name`` or ``description`` is missing.
        """
        return cls(
            name=data["name"],
            description=data["description"],
            parameters=data.get("parameters", default_parameters()),
            url=data.get("url"),
            method=data.get("method", "POST"),
            headers=dict(data.get("headers", {})),
            timeout_ms=data.get("timeout_ms", DEFAULT_TOOL_TIMEOUT_MS),
            ack_ms=data.get("ack_ms", DEFAULT_TOOL_ACK_MS),
            is_async=data.get("async", False),
            function=data.get("function"),
            python=data.get("python"),
        )


@final
@dataclass(frozen=True)
class KnowledgeSource:
    """One document of the agent's knowledge, as text.

    Attributes:
        source: where it came from, shown with each passage found in it (a file
            name relative to the agent file, or ``inline[N]``).
        text: its text (a PDF's extracted text).
    """

    source: str
    text: str


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
        number_modes: the modes some of those numbers start their calls on
            (number -> mode; :mod:`.call_chain`).
        instructions: the system prompt for LLM providers.
        mode: the first provider, one of :data:`MODES`.
        fallback: the providers to try after ``mode``, in order.
        providers: per-mode options (mode -> option -> string value); the
            names and defaults are in :data:`PROVIDER_OPTIONS`. Read them
            with :meth:`option`.
        tools: function tools beyond the builtins.
        hours: weekday (``"monday"``) -> ``"HH:MM-HH:MM"`` (24-hour, end may be
            ``24:00``) or ``"closed"``; days not listed are closed.
        timezone: IANA time zone of ``hours``.
        transfer_number: E.164 number for ``transfer_to_human``, or None.
        when_busy: what a phone caller gets when the server cannot take the
            call (full or draining), one of :data:`WHEN_BUSY`; ``transfer``
            needs ``transfer_number``.
        max_call_seconds: the call is ended after this many seconds.
        idle_timeout_seconds: silence from the caller after which the call ends.
        voice: voice or language name for speech synthesis.
        no_match_reply: said when no intent matches.
        failover: when a provider counts as failed and how far the supervisor
            goes (stall and connect timeouts, the turn lock, the cooldown, the
            switch budget): :class:`FailoverSettings`.
        recording: whether calls are recorded, and how consent is announced
            (:class:`~.recording_policy.RecordingPolicy`; default: not recorded).
        knowledge: documents the agent answers from (``search_knowledge``).
        analysis: the criteria post-call analysis scores calls against.
    """

    name: str
    tenant: str
    greeting: str
    intents: tuple[Intent, ...]
    phone_numbers: tuple[str, ...] = ()
    number_modes: Mapping[str, str] = field(default_factory=dict)
    instructions: str = ""
    mode: str = "local"
    fallback: tuple[str, ...] = ()
    providers: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    tools: tuple[ToolSpec, ...] = ()
    hours: Mapping[str, str] = field(default_factory=dict)
    timezone: str = "UTC"
    transfer_number: str | None = None
    when_busy: str = "reject"
    max_call_seconds: int = 600
    idle_timeout_seconds: int = 30
    voice: str = "en-us"
    no_match_reply: str = DEFAULT_NO_MATCH_REPLY
    failover: FailoverSettings = field(default_factory=FailoverSettings)
    recording: RecordingPolicy = field(default_factory=RecordingPolicy)
    knowledge: tuple[KnowledgeSource, ...] = ()
    analysis: AnalysisSpec = field(default_factory=AnalysisSpec)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hours", MappingProxyType(dict(self.hours)))
        object.__setattr__(
            self,
            "providers",
            MappingProxyType({m: MappingProxyType(dict(o)) for m, o in self.providers.items()}),
        )
        problem = _spec_problem(self)
        if problem is not None:
            raise ValueError(f"agent {self.name!r}: {problem}")

    def option(self, mode: str, name: str) -> str:
        """Provider option ``name`` of ``mode``: the agent's value or the default.

        Raises:
            KeyError: ``name`` is not an option of ``mode`` (see :data:`PROVIDER_OPTIONS`).
        """
        default = PROVIDER_OPTIONS[mode][name]
        return self.providers.get(mode, {}).get(name, default)

    def function_tools(self) -> tuple[ToolSpec, ...]:
        """The tools offered to a model: the builtins, then the agent's own.

        An agent tool named like a builtin replaces it (its description and
        parameters win); ``transfer_to_human`` is offered only when the agent
        has a ``transfer_number``, ``search_knowledge`` only when it has
        ``knowledge``.
        """
        own = {t.name for t in self.tools}
        builtins = tuple(
            t
            for t in BUILTIN_TOOLS
            if t.name not in own
            and (t.name != "transfer_to_human" or self.transfer_number)
            and (t.name != SEARCH_KNOWLEDGE or self.knowledge)
        )
        return builtins + self.tools

    def intent(self, name: str) -> Intent | None:
        """The intent called ``name``, or None."""
        return next((i for i in self.intents if i.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON data (for a ``jsonb`` column); ``from_json`` inverts it exactly."""
        data: dict[str, Any] = {
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
            "providers": {m: dict(o) for m, o in self.providers.items()},
            "tools": [t.to_json() for t in self.tools],
            "hours": dict(self.hours),
            "timezone": self.timezone,
            "transfer_number": self.transfer_number,
            "when_busy": self.when_busy,
            "max_call_seconds": self.max_call_seconds,
            "idle_timeout_seconds": self.idle_timeout_seconds,
            "voice": self.voice,
            "no_match_reply": self.no_match_reply,
            "failover": self.failover.to_json(),
            "recording": self.recording.to_json(),
        }
        if self.number_modes:  # absent when empty: older specs keep their version hash
            data["number_modes"] = dict(self.number_modes)
        if self.knowledge:  # absent when empty: older specs keep their version hash
            data["knowledge"] = [{"source": k.source, "text": k.text} for k in self.knowledge]
        if self.analysis.criteria:  # likewise
            data["analysis"] = self.analysis.to_json()
        return data

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
                number_modes=dict(data.get("number_modes", {})),
                instructions=data.get("instructions", ""),
                mode=data.get("mode", "local"),
                fallback=tuple(data.get("fallback", ())),
                providers=dict(data.get("providers", {})),
                tools=tuple(ToolSpec.from_json(t) for t in data.get("tools", ())),
                hours=dict(data.get("hours", {})),
                timezone=data.get("timezone", "UTC"),
                transfer_number=data.get("transfer_number"),
                when_busy=data.get("when_busy", "reject"),
                max_call_seconds=data.get("max_call_seconds", 600),
                idle_timeout_seconds=data.get("idle_timeout_seconds", 30),
                voice=data.get("voice", "en-us"),
                no_match_reply=data.get("no_match_reply", DEFAULT_NO_MATCH_REPLY),
                failover=FailoverSettings.from_json(data.get("failover", {})),
                recording=RecordingPolicy.from_json(data.get("recording", {})),
                knowledge=tuple(
                    KnowledgeSource(k["source"], k["text"]) for k in data.get("knowledge", ())
                ),
                analysis=AnalysisSpec.from_json(data.get("analysis")),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not an agent spec: {exc!r}") from exc


# ---------------------------------------------------------------------------
# Rules shared by the parser (which adds line numbers) and AgentSpec.__post_init__


def e164_problem(number: str) -> str | None:
    if _E164.fullmatch(number):
        return None
    return f"{number!r} is not an E.164 phone number (a '+', then 2 to 15 digits, no spaces)"


def _minutes(hh: str, mm: str) -> int:
    return int(hh) * 60 + int(mm)


def hours_problem(value: str) -> str | None:
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


def timezone_problem(name: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} (expected an IANA name such as 'America/New_York')"
    return None


def provider_option_problem(mode: str, name: str, value: str) -> str | None:
    """What is wrong with option ``name: value`` under ``providers.<mode>``, or None."""
    if mode not in PROVIDER_OPTIONS:
        return f"unknown provider mode {mode!r} under providers"
    if name not in PROVIDER_OPTIONS[mode]:
        known = ", ".join(PROVIDER_OPTIONS[mode]) or "none"
        return f"unknown option {name!r} for {mode} (known: {known})"
    if not isinstance(value, str):
        return f"option {name!r} of {mode} must be a string"
    if name == "turn_detection" and value not in TURN_DETECTION_MODES:
        return f"turn_detection must be one of {', '.join(TURN_DETECTION_MODES)}, got {value!r}"
    return None


def webhook_url_problem(url: str) -> str | None:
    """What is wrong with a webhook tool's ``url``, or None: an absolute ``http`` or
    ``https`` URL with a host, no user name or password, no fragment. Where it
    points (a private address) is checked on each call, after resolution."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError as exc:
        return f"{url!r} is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"{url!r}: a webhook URL must start with https:// (or http://)"
    if not parts.hostname:
        return f"{url!r} has no host"
    if parts.username is not None or parts.password is not None:
        return f"{url!r}: put credentials in headers, not in the URL"
    if parts.fragment:
        return f"{url!r}: a URL fragment (#...) is never sent; remove it"
    return None


def webhook_header_problem(name: str) -> str | None:
    """What is wrong with a webhook header ``name``, or None (RFC 9110 token; not one
    the runtime sets itself, :data:`RESERVED_HEADERS`)."""
    if not _HEADER_NAME.fullmatch(name):
        return f"{name!r} is not a valid HTTP header name"
    if name.lower() in RESERVED_HEADERS:
        return f"the runtime sets {name} itself"
    return None


def when_busy_problem(value: str, transfer_number: str | None) -> str | None:
    """What is wrong with ``when_busy: value``, or None (the message omits the key)."""
    if value not in WHEN_BUSY:
        return f"must be one of {', '.join(WHEN_BUSY)}, got {value!r}"
    if value == "transfer" and transfer_number is None:
        return "'transfer' needs a transfer_number"
    return None


def tool_name_problem(name: str) -> str | None:
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
        *(
            provider_option_problem(m, k, v)
            for m, options in spec.providers.items()
            for k, v in options.items()
        ),
        *(e164_problem(n) for n in spec.phone_numbers),
        *(
            None
            if n in spec.phone_numbers and m in MODES
            else f"number_modes: {n} -> {m!r} (a listed number and a mode are needed)"
            for n, m in spec.number_modes.items()
        ),
        None if spec.transfer_number is None else e164_problem(spec.transfer_number),
        _keyed("when_busy", when_busy_problem(spec.when_busy, spec.transfer_number)),
        *(None if d in WEEKDAYS else f"unknown weekday {d!r}" for d in spec.hours),
        *(hours_problem(v) for v in spec.hours.values()),
        timezone_problem(spec.timezone),
        None if spec.max_call_seconds > 0 else "max_call_seconds must be positive",
        None if spec.idle_timeout_seconds > 0 else "idle_timeout_seconds must be positive",
        *(tool_name_problem(t.name) for t in spec.tools),
        None
        if isinstance(spec.failover, FailoverSettings)
        else f"failover must be FailoverSettings, got {type(spec.failover).__name__}",
        None
        if isinstance(spec.recording, RecordingPolicy)
        else f"recording must be RecordingPolicy, got {type(spec.recording).__name__}",
    ]
    sources = [k.source for k in spec.knowledge]
    checks += [
        None if len(set(sources)) == len(sources) else "knowledge lists a document twice",
        *(
            None if k.source.strip() and k.text.strip() else f"knowledge {k.source!r} is empty"
            for k in spec.knowledge
        ),
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


def _keyed(key: str, problem: str | None) -> str | None:
    return None if problem is None else f"{key}: {problem}"


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


BUILTIN_TOOLS: Final = (
    ToolSpec(
        "lookup_hours",
        "Look up the business's opening hours, as a sentence to read to the caller.",
    ),
    ToolSpec(
        "transfer_to_human",
        "Put the caller through to a person. Tell the caller first.",
        {"type": "object", "properties": {"reason": {"type": "string"}}},
    ),
    ToolSpec("hangup_call", "End the call once you have said goodbye."),
    ToolSpec(
        SEARCH_KNOWLEDGE,
        "Search the business's documents (questions and answers, policies, prices) for what"
        " the caller asks. Returns the best passages with their source and heading, as JSON;"
        " answer from them only, in a sentence or two, and say so when none fits.",
        {
            "type": "object",
            "properties": {
                "query": {
                    "type": "string",
                    "description": "The caller's question, in their words.",
                }
            },
            "required": ["query"],
        },
    ),
)
"""The runtime's tools (``switchboard.actors.tool_executor`` runs them), for LLM providers."""
