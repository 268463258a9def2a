"""The model's tool arguments checked against the tool's JSON Schema before it runs.

A mismatch is a tool error the model sees (it can call again with better
arguments), never a request to the business. Validation follows JSON Schema
draft 2020-12 (https://json-schema.org/draft/2020-12), through the
``jsonschema`` package; a schema with no ``$schema`` is read as 2020-12.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

__all__ = ["ArgumentChecker", "schema_problem"]

MAX_PROBLEM_CHARS = 300


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """What makes ``schema`` an invalid JSON Schema (its meta-schema's verdict), or None."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    return None


class ArgumentChecker:
    """Validators for one agent's tools, made once per tool and reused."""

    def __init__(self) -> None:
        self._validators: dict[str, jsonschema.protocols.Validator] = {}

    def problem(
        self, tool: str, parameters: Callable[[], Mapping[str, Any]], arguments: Any
    ) -> str | None:
        """What is wrong with ``arguments`` for ``tool``, as a sentence naming the argument,
        or None when they are valid. ``parameters`` gives the tool's JSON Schema (JSON
        data); it is called once per tool, when its validator is made."""
        validator = self._validators.get(tool)
        if validator is None:
            schema = parameters()
            cls = jsonschema.validators.validator_for(
                schema, default=jsonschema.Draft202012Validator
            )
            validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
            self._validators[tool] = validator
        error = best_match(validator.iter_errors(arguments))
        if error is None:
            return None
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in error.path)
        message = error.message
        if len(message) > MAX_PROBLEM_CHARS:
            message = message[:MAX_PROBLEM_CHARS] + "..."
        return f"arguments{where}: {message}"
