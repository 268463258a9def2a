"""A Python tool's model-facing side, read from its signature and docstring.

:func:`describe_function` turns ``async def check_slots(day: str, part:
Literal["morning", "afternoon"] = "morning", call: ToolInvocation) -> ...``
into the tool's description (the docstring's first paragraph) and its
``parameters``, a JSON Schema object (JSON Schema 2020-12, the dialect the
tool executor validates arguments with, plain enough for OpenAI's and Gemini's
function declarations):

==============================  ==========================================
annotation                      schema
==============================  ==========================================
``str`` / ``int`` / ``float``   ``{"type": "string" | "integer" | "number"}``
``bool`` / ``None``             ``{"type": "boolean" | "null"}``
``X | Y`` (``Optional[X]``)     ``{"anyOf": [X, Y]}``
``Literal["a", 1]``             ``{"enum": ["a", 1]}`` (with ``type`` when all
                                values share one)
``list[X]`` / ``list``          ``{"type": "array", "items": X}``
``dict[str, X]`` / ``dict``     ``{"type": "object", "additionalProperties": X}``
``Annotated[X, "text"]``        X, with ``"description": "text"``
==============================  ==========================================

A parameter without a default is required; a default that is JSON is given as
the schema's ``default``. Unknown arguments are refused
(``additionalProperties: false``). A parameter's description comes from
``Annotated`` or else from the docstring's Google-style ``Args:`` section
(``name: text``) or reST ``:param name: text``. A parameter annotated with
:class:`~.invocation.ToolInvocation` (or ``ToolInvocation | None``; any name) is
not in the schema: it receives the call's context.

Anything else (``*args``, ``**kwargs``, positional-only parameters, a missing
or unsupported annotation, ``dict`` keys other than ``str``, a sync function)
is a :class:`PythonToolError` naming the function and the parameter.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, final

from switchboard.orchestrator.errors import ConfigError

from .invocation import ToolInvocation

__all__ = ["PythonToolError", "ToolSignature", "describe_function"]


class PythonToolError(ConfigError):
    """A Python tool cannot be offered: its entry point is not installed, does not
    import, is not an ``async def`` function, or has a signature that has no JSON
    Schema (see the module docstring). The message says which and where."""


_SIMPLE: Final[Mapping[object, str]] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    None: "null",
}
_SECTION: Final = re.compile(
    r"(Args|Arguments|Parameters|Params|Returns|Return|Yields|Raises|Examples?|Notes?|"
    r"Attributes|See Also|Warnings?)\s*:?\s*$"
)
_GOOGLE_ARG: Final = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_REST_PARAM: Final = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


@final
@dataclass(frozen=True)
class ToolSignature:
    """What a Python tool offers the model, and how to call it.

    Attributes:
        description: the docstring's first paragraph on one line (``""`` without
            a docstring: the agent file must then give one).
        parameters: the JSON Schema object of the model's arguments.
        arguments: the names of the parameters the model fills, in order.
        context: the names of the parameters that receive the
            :class:`~.invocation.ToolInvocation`.
        integers: the arguments annotated ``int`` (or ``int | None``): a JSON
            number such as ``2.0`` that the schema accepts as an integer is
            passed as ``2``.
        required: the arguments without a default.
    """

    description: str
    parameters: Mapping[str, Any]
    arguments: tuple[str, ...]
    context: tuple[str, ...]
    integers: frozenset[str]
    required: frozenset[str] = frozenset()


def describe_function(function: Callable[..., Any], where: str) -> ToolSignature:
    """The description and JSON Schema of ``function``, an ``async def`` function.

    Args:
        function: the tool's function.
        where: how errors name it (``"entry point 'book' (clinic.tools:book)"``).

    Raises:
        PythonToolError: not an async function, or a parameter the rules of the
            module docstring do not cover.
    """
    if not inspect.iscoroutinefunction(function):
        raise PythonToolError(
            f"{where} must be an async function (async def); a blocking function can be "
            "wrapped: await trio.to_thread.run_sync(...) inside an async def"
        )
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception as exc:  # NameError for an annotation that does not resolve, and others
        raise PythonToolError(f"{where}: its annotations do not resolve ({exc})") from exc
    doc = inspect.getdoc(function) or ""
    documented = _documented_parameters(doc)
    properties: dict[str, Any] = {}
    required: list[str] = []
    arguments: list[str] = []
    context: list[str] = []
    integers: set[str] = set()
    for parameter in inspect.signature(function).parameters.values():
        name = parameter.name
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            raise PythonToolError(
                f"{where}: parameter {name!r} is {parameter.kind.description}; a tool's "
                "parameters are named (keyword) parameters"
            )
        if name not in hints:
            raise PythonToolError(f"{where}: parameter {name!r} needs a type annotation")
        annotation = hints[name]
        if annotation is ToolInvocation or annotation == ToolInvocation | None:
            context.append(name)
            continue
        try:
            schema = _schema(annotation)
        except TypeError as exc:
            raise PythonToolError(f"{where}: parameter {name!r}: {exc}") from exc
        if "description" not in schema and name in documented:
            schema["description"] = documented[name]
        if parameter.default is parameter.empty:
            required.append(name)
        elif _is_json(parameter.default):
            schema["default"] = parameter.default
        if annotation is int or annotation == int | None:
            integers.add(name)
        properties[name] = schema
        arguments.append(name)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    parameters["additionalProperties"] = False
    return ToolSignature(
        _first_paragraph(doc),
        parameters,
        tuple(arguments),
        tuple(context),
        frozenset(integers),
        frozenset(required),
    )


def _schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of one annotation; TypeError names what is not supported."""
    if (annotation is None or isinstance(annotation, type)) and annotation in _SIMPLE:
        return {"type": _SIMPLE[annotation]}
    if annotation is list:
        return {"type": "array"}
    if annotation is dict:
        return {"type": "object"}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        schema = _schema(args[0])
        texts = [m for m in args[1:] if isinstance(m, str)]
        if texts:
            schema["description"] = texts[0]
        return schema
    if origin is typing.Union or origin is types.UnionType:
        return {"anyOf": [_schema(a) for a in args]}
    if origin is typing.Literal:
        bad = [v for v in args if not (v is None or isinstance(v, str | int | bool))]
        if bad:
            raise TypeError(f"Literal values must be str, int, bool or None, not {bad[0]!r}")
        kinds = {_SIMPLE[type(v)] for v in args}
        if len(kinds) == 1:
            return {"type": kinds.pop(), "enum": list(args)}
        return {"enum": list(args)}
    if origin is list and len(args) == 1:
        return {"type": "array", "items": _schema(args[0])}
    if origin is dict and len(args) == 2:
        if args[0] is not str:
            raise TypeError(f"a dict's keys must be str (JSON object keys), not {args[0]!r}")
        return {"type": "object", "additionalProperties": _schema(args[1])}
    raise TypeError(
        f"annotation {annotation!r} has no JSON Schema here; use str, int, float, bool, "
        "None, a union of them, Literal[...], list[...], dict[str, ...] or Annotated[..., 'text']"
    )


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list | tuple):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _first_paragraph(doc: str) -> str:
    """The docstring's first paragraph (up to a blank line or a section header), on one line."""
    lines: list[str] = []
    for line in doc.splitlines():
        if not line.strip() or _SECTION.fullmatch(line.strip()):
            break
        lines.append(line.strip())
    return " ".join(lines)


def _documented_parameters(doc: str) -> dict[str, str]:
    """Parameter descriptions from a Google-style ``Args:`` section or reST ``:param:`` lines."""
    found: dict[str, str] = {}
    for line in doc.splitlines():
        match = _REST_PARAM.match(line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    in_args = False
    current: str | None = None
    indent = 0
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args, current, indent = True, None, -1
            continue
        if not in_args:
            continue
        if not stripped:
            continue
        width = len(line) - len(line.lstrip())
        if width == 0 and _SECTION.fullmatch(stripped):
            break
        match = _GOOGLE_ARG.match(line)
        if match and (indent < 0 or width <= indent):
            indent = width
            current = match.group(1)
            found[current] = match.group(2).strip()
        elif current is not None and width > indent:
            found[current] = f"{found[current]} {stripped}".strip()
        else:
            break
    return found
