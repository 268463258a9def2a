"""Python tools: ``async def`` functions shipped in an installed package.

A business adds a tool without touching Switchboard: its package declares an
entry point in the ``switchboard.tools`` group (the Python packaging
specification's "Entry points" mechanism, read with
:func:`importlib.metadata.entry_points`)::

    # the business's pyproject.toml
    [project.entry-points."switchboard.tools"]
    check_appointment_slots = "bright_smile_tools.slots:check_appointment_slots"

and an agent file names it: ``tools: [{name: check_slots, python:
check_appointment_slots}]``. The tool's description and JSON Schema
``parameters`` come from the function's docstring and typed signature
(:mod:`.python_schema`); the agent file's own ``description`` / ``parameters``
win when given.

The function runs on the call's Trio event loop, in the call's tool task: it
must not block. Blocking I/O goes through ``await trio.to_thread.run_sync(f,
...)`` (or an async client such as ``httpx.AsyncClient``); CPU-heavy work
through ``trio_parallel.run_sync``. Its return value is given to the model as
text: a ``str`` as it is, anything else as compact JSON (msgspec's encoder:
dicts, lists, dataclasses, datetimes, UUIDs, enums), capped at
:data:`MAX_OUTPUT_BYTES` with a note when truncated. An exception it raises is
a ``crashed`` outcome with the exception's type and message (logged, never
raised); cancellation (the executor's ``timeout_ms``, the call ending) is not
caught.

Errors, all :class:`~.python_schema.PythonToolError` (a ``ConfigError``):
the entry point is not installed (the message lists those that are), does not
import, is not an ``async def`` function, or has a signature without a JSON
Schema.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final, final

import msgspec
import structlog

from .invocation import MODEL_OUTPUT_BYTES, ToolInvocation, ToolOutcome, for_model
from .python_schema import PythonToolError, ToolSignature, describe_function

__all__ = [
    "ENTRY_POINT_GROUP",
    "MAX_MESSAGE_CHARS",
    "MAX_OUTPUT_BYTES",
    "PythonTool",
    "PythonToolError",
    "PythonToolRunner",
    "clear_loaded_tools",
    "installed_tool_names",
    "load_python_tool",
    "python_tool",
]

log = structlog.get_logger("switchboard.tools")

ENTRY_POINT_GROUP: Final = "switchboard.tools"
"""The entry-point group a package declares its tools in."""

MAX_OUTPUT_BYTES: Final = MODEL_OUTPUT_BYTES
"""The most of a tool's answer (UTF-8 bytes) the model is given, as for a webhook's."""

MAX_MESSAGE_CHARS: Final = 500
"""The most of an exception's message (characters) a ``crashed`` outcome carries."""


@final
@dataclass(frozen=True)
class PythonTool:
    """One loaded Python tool.

    Attributes:
        entry_point: the entry point's name (what an agent file's ``python:`` says).
        target: where it points, ``module:attribute``.
        function: the ``async def`` function.
        signature: its description, JSON Schema and how to call it.
    """

    entry_point: str
    target: str
    function: Callable[..., Awaitable[object]]
    signature: ToolSignature

    @property
    def description(self) -> str:
        """The docstring's first paragraph (``""`` without a docstring)."""
        return self.signature.description

    @property
    def parameters(self) -> Mapping[str, Any]:
        """The JSON Schema object of the model's arguments."""
        return self.signature.parameters


def python_tool(entry_point: str, function: Callable[..., Awaitable[object]]) -> PythonTool:
    """A :class:`PythonTool` from a function in hand (what loading an entry point
    gives; also the seam for tests that do not install a package).

    Raises:
        PythonToolError: see :func:`~.python_schema.describe_function`.
    """
    target = f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', '?')}"
    where = f"Python tool {entry_point!r} ({target})"
    return PythonTool(entry_point, target, function, describe_function(function, where))


def installed_tool_names() -> tuple[str, ...]:
    """The names of the installed ``switchboard.tools`` entry points, sorted."""
    return tuple(sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}))


def load_python_tool(entry_point: str) -> PythonTool:
    """Find, import and describe the installed tool named ``entry_point``.

    Scans the installed distributions' metadata (a few milliseconds) and
    imports the tool's module (once per process, as any import).

    Raises:
        PythonToolError: no such entry point (the message names the installed
            ones), two distributions declare it, its module or attribute does
            not import, or it is not a usable tool function.
    """
    found = metadata.entry_points(group=ENTRY_POINT_GROUP, name=entry_point)
    targets = sorted({ep.value for ep in found})
    if not targets:
        names = installed_tool_names()
        installed = ", ".join(repr(n) for n in names) if names else "none"
        close = difflib.get_close_matches(entry_point, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise PythonToolError(
            f"no installed Python tool {entry_point!r}; {hint}(the {ENTRY_POINT_GROUP!r} "
            f"entry points installed: {installed}); pip install the package that provides it"
        )
    if len(targets) > 1:
        raise PythonToolError(
            f"Python tool {entry_point!r} is declared by more than one installed package: "
            + ", ".join(targets)
        )
    ep = next(iter(found))
    try:
        function = ep.load()
    except Exception as exc:
        raise PythonToolError(
            f"Python tool {entry_point!r} ({ep.value}) does not import: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(function):
        raise PythonToolError(
            f"Python tool {entry_point!r} ({ep.value}) is not a function but "
            f"{type(function).__name__}"
        )
    where = f"Python tool {entry_point!r} ({ep.value})"
    return PythonTool(entry_point, ep.value, function, describe_function(function, where))


_loaded: dict[str, PythonTool] = {}
"""Entry points the runners have loaded in this process, by name (a module, once
imported, stays imported: so does its tool)."""


def _load_once(entry_point: str) -> PythonTool:
    tool = _loaded.get(entry_point)
    if tool is None:
        tool = _loaded[entry_point] = load_python_tool(entry_point)
    return tool


def clear_loaded_tools() -> None:
    """Forget the tools runners have loaded, so the next run looks its entry point
    up again (after packages are installed or removed in a running process: tests)."""
    _loaded.clear()


def _clipped(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _output(name: str, value: object) -> ToolOutcome:
    """The model's text for a tool's return value, capped at :data:`MAX_OUTPUT_BYTES`."""
    if isinstance(value, str):
        data = value.encode()
    else:
        try:
            data = msgspec.json.encode(value)
        except (TypeError, ValueError, OverflowError) as exc:
            log.warning("python tool answer is not JSON", tool=name, error=str(exc))
            return ToolOutcome.failed(
                "invalid_json",
                f"The tool {name} gave an answer that could not be read. "
                "Tell the caller you could not get that information right now.",
                result_type=type(value).__name__,
                message=str(exc),
            )
    text, truncated = for_model(data, MAX_OUTPUT_BYTES)
    if not truncated:
        return ToolOutcome(True, text)
    return ToolOutcome(True, text, detail={"bytes": len(data), "truncated": True})


class PythonToolRunner:
    """Runs an agent's Python tools (a :class:`~.invocation.ToolRunner`).

    Args:
        tools: tool name (``ToolInvocation.name``, the agent file's ``name``) to
            the entry point's name (its ``python:``), or to a loaded
            :class:`PythonTool`. An entry point is looked up and imported on
            its first run in the process (a few milliseconds, once) and kept;
            one that cannot be loaded (uninstalled since the agent file was
            read) is a ``not_configured`` outcome, not an error. A runner is
            cheap: one per call or per tool call is fine.
    """

    def __init__(self, tools: Mapping[str, str | PythonTool]) -> None:
        self._tools = dict(tools)

    def _tool(self, name: str) -> PythonTool | ToolOutcome:
        entry = self._tools.get(name)
        if entry is None:
            return ToolOutcome.failed(
                "unknown_tool", f"There is no Python tool called {name}.", tool=name
            )
        if isinstance(entry, PythonTool):
            return entry
        try:
            tool = _load_once(entry)
        except PythonToolError as exc:
            log.error("python tool not loaded", tool=name, entry_point=entry, error=str(exc))
            return ToolOutcome.failed(
                "not_configured",
                f"The tool {name} is not available. Tell the caller it cannot be done now.",
                entry_point=entry,
                message=str(exc),
            )
        self._tools[name] = tool
        return tool

    async def __call__(self, invocation: ToolInvocation) -> ToolOutcome:
        """Run the tool with the invocation's arguments (already validated against
        the tool's schema); never raises except for cancellation."""
        tool = self._tool(invocation.name)
        if isinstance(tool, ToolOutcome):
            return tool
        signature = tool.signature
        kwargs: dict[str, Any] = dict(invocation.arguments)
        for name in signature.integers:
            value = kwargs.get(name)
            if isinstance(value, float) and value.is_integer():
                kwargs[name] = int(value)
        for name in signature.context:
            kwargs[name] = invocation
        # The agent file's own parameters may disagree with the function.
        unexpected = sorted(set(invocation.arguments) - set(signature.arguments))
        missing = sorted(signature.required - set(invocation.arguments))
        if unexpected or missing:
            problem = "; ".join(
                f"{what}: {', '.join(names)}"
                for what, names in (("unexpected", unexpected), ("missing", missing))
                if names
            )
            return ToolOutcome.failed(
                "invalid_arguments",
                f"The tool {invocation.name} cannot take these arguments ({problem}).",
                unexpected=unexpected,
                missing=missing,
            )
        try:
            value = await tool.function(**kwargs)
        except (Exception, SystemExit) as exc:  # the tool's failure is an outcome, never ours
            log.warning(
                "python tool crashed",
                tool=invocation.name,
                entry_point=tool.entry_point,
                call_id=invocation.call_id,
                exc_info=exc,
            )
            message = _clipped(str(exc))
            return ToolOutcome.failed(
                "crashed",
                f"The tool {invocation.name} failed ({type(exc).__name__}: {message}). "
                "Tell the caller it could not be done right now.",
                exception_type=type(exc).__name__,
                message=message,
            )
        return _output(invocation.name, value)
