"""A Python tool's JSON Schema and description, read from its signature and docstring:
every value of the annotated type passes the schema, other kinds do not, and an
annotation without a schema is an error naming the parameter."""

from __future__ import annotations

import datetime
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.actors.tools.invocation import ToolInvocation
from switchboard.actors.tools.python_schema import PythonToolError, describe_function

Typed = tuple[Any, st.SearchStrategy[Any]]  # an annotation, and values of that type


def tool_with(annotations: dict[str, Any], defaults: dict[str, Any] | None = None) -> Any:
    """``async def tool(<name>: <annotation> [= default], ...)`` built at run time."""
    defaults = defaults or {}
    names = ", ".join(f"{n}=_d[{n!r}]" if n in defaults else n for n in annotations)
    scope: dict[str, Any] = {"_d": defaults}
    exec(f"async def tool({names}):\n    '''A tool.'''\n", scope)
    tool = scope["tool"]
    tool.__annotations__ = dict(annotations)
    return tool


def schema_of(annotation: Any) -> dict[str, Any]:
    parameters = describe_function(tool_with({"x": annotation}), "tool").parameters
    schema: dict[str, Any] = parameters["properties"]["x"]
    return schema


LEAVES: list[Typed] = [
    (str, st.text(max_size=5)),
    (int, st.integers()),
    (float, st.floats(allow_nan=False, allow_infinity=False)),
    (bool, st.booleans()),
    (type(None), st.none()),
    (Literal["morning", "afternoon"], st.sampled_from(["morning", "afternoon"])),
    (Literal[1, "one", None], st.sampled_from([1, "one", None])),
    (list, st.lists(st.integers(), max_size=3)),
    (dict, st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=3)),
]


def extend(children: st.SearchStrategy[Typed]) -> st.SearchStrategy[Typed]:
    def union(pair: tuple[Typed, Typed]) -> Typed:
        (a, values_a), (b, values_b) = pair
        return typing.Union[a, b], st.one_of(values_a, values_b)  # noqa: UP007 - built at run time

    return st.one_of(
        children.map(lambda c: (list[c[0]], st.lists(c[1], max_size=3))),  # type: ignore[name-defined]
        children.map(
            lambda c: (
                dict[str, c[0]],  # type: ignore[name-defined]
                st.dictionaries(st.text(max_size=3), c[1], max_size=3),
            )
        ),
        st.tuples(children, children).map(union),
        children.map(lambda c: (Annotated[c[0], "what it is"], c[1])),
    )


TYPED = st.recursive(st.sampled_from(LEAVES), extend, max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(TYPED.flatmap(lambda typed: st.tuples(st.just(typed[0]), typed[1])))
def test_every_value_of_the_annotated_type_passes_the_schema(pair: tuple[Any, Any]) -> None:
    annotation, value = pair
    schema = schema_of(annotation)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(value, schema, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(
    ("annotation", "wrong"),
    [
        (str, 3),
        (int, "3"),
        (int, 2.5),
        (int, True),
        (float, "2.5"),
        (bool, 0),
        (type(None), ""),
        (str | None, 0),
        (Literal["morning", "afternoon"], "evening"),
        (list[int], [1, "2"]),
        (list[int], {"0": 1}),
        (dict[str, int], {"a": "1"}),
        (dict[str, int], [1]),
    ],
)
def test_a_value_of_another_kind_fails_the_schema(annotation: Any, wrong: Any) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, schema_of(annotation), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize(
    ("annotation", "schema"),
    [
        (str, {"type": "string"}),
        (float, {"type": "number"}),
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (Literal[1, "a"], {"enum": [1, "a"]}),
        (list[str], {"type": "array", "items": {"type": "string"}}),
        (dict[str, bool], {"type": "object", "additionalProperties": {"type": "boolean"}}),
        (Annotated[int, "guests, 1 to 12"], {"type": "integer", "description": "guests, 1 to 12"}),
    ],
)
def test_the_schema_of_each_supported_annotation(annotation: Any, schema: Any) -> None:
    assert schema_of(annotation) == schema


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=6))
def test_the_parameters_without_a_default_are_required(has_default: list[bool]) -> None:
    names = [f"p{i}" for i in range(len(has_default))]
    # Python wants defaults last among positional parameters: keep that order.
    order = sorted(range(len(names)), key=lambda i: has_default[i])
    annotations = {names[i]: int for i in order}
    defaults = {names[i]: i for i in order if has_default[i]}
    parameters = describe_function(tool_with(annotations, defaults), "tool").parameters
    required = [names[i] for i in order if not has_default[i]]
    assert parameters.get("required", []) == required
    assert [parameters["properties"][n].get("default") for n in defaults] == list(defaults.values())
    assert parameters["additionalProperties"] is False


def test_the_call_context_is_not_a_model_argument() -> None:
    async def note(
        text: str,
        call: ToolInvocation,
        *,
        urgent: bool = False,
        again: ToolInvocation | None = None,
    ) -> None:
        """Leave a note."""

    signature = describe_function(note, "tool")
    assert signature.context == ("call", "again")
    assert signature.arguments == ("text", "urgent")
    assert list(signature.parameters["properties"]) == ["text", "urgent"]
    assert signature.parameters["required"] == ["text"]


def test_the_description_and_parameter_notes_come_from_the_docstring() -> None:
    async def book(guests: int, time: str, note: Annotated[str, "from Annotated"] = "") -> str:
        """Book a table
        for tonight.
        Args:
            guests: how many people,
                at most 12.
            time (str): the time as HH:MM.
            note: from the docstring (Annotated wins).

        Returns:
            a confirmation.
        """
        return ""

    signature = describe_function(book, "tool")
    assert signature.description == "Book a table for tonight."
    properties = signature.parameters["properties"]
    assert properties["guests"]["description"] == "how many people, at most 12."
    assert properties["time"]["description"] == "the time as HH:MM."
    assert properties["note"]["description"] == "from Annotated"

    async def rest(day: str) -> str:
        """Free times on a day.

        :param day: the day as YYYY-MM-DD.
        """
        return ""

    rest_signature = describe_function(rest, "tool")
    assert rest_signature.description == "Free times on a day."
    assert rest_signature.parameters["properties"]["day"]["description"] == "the day as YYYY-MM-DD."


async def _no_annotation(x) -> None:  # type: ignore[no-untyped-def]
    """No annotation."""


async def _var_args(*days: str) -> None:
    """Varargs."""


async def _var_kwargs(**options: str) -> None:
    """Kwargs."""


async def _positional_only(day: str, /) -> None:
    """Positional only."""


def _sync(day: str) -> None:
    """Not async."""


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (tool_with({"day": datetime.date}), r"'day': annotation <class 'datetime.date'> has no"),
        (tool_with({"seats": tuple[int, int]}), r"'seats': annotation tuple\[int, int\] has no"),
        (tool_with({"seats": set[int]}), r"'seats': annotation set\[int\]"),
        (tool_with({"by_id": dict[int, str]}), r"'by_id': a dict's keys must be str"),
        (tool_with({"when": Literal[1.5]}), r"'when': Literal values must be"),
        (tool_with({"x": list[datetime.time]}), r"'x': annotation <class 'datetime.time'>"),
        (_no_annotation, r"parameter 'x' needs a type annotation"),
        (_var_args, r"parameter 'days' is variadic positional"),
        (_var_kwargs, r"parameter 'options' is variadic keyword"),
        (_positional_only, r"parameter 'day' is positional-only"),
        (_sync, r"must be an async function \(async def\)"),
    ],
)
def test_an_annotation_without_a_schema_is_a_clear_error(
    function: Callable[..., Any], message: str
) -> None:
    with pytest.raises(PythonToolError, match=message) as caught:
        describe_function(function, "Python tool 'x' (clinic:x)")
    assert str(caught.value).startswith("Python tool 'x' (clinic:x)")


def test_an_annotation_that_does_not_resolve_is_a_clear_error() -> None:
    tool = tool_with({"day": "Weekday"})
    with pytest.raises(PythonToolError, match=r"annotations do not resolve .*Weekday"):
        describe_function(tool, "tool")
