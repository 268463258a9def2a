"""Range headers (RFC 9110 section 14), pure: any header gives an answer, never a crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.orchestrator.http_range import ByteRange, RangeNotSatisfiable, requested_range


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-0", (0, 1)),
        ("bytes=0-999", (0, 1000)),
        ("bytes=0-5000", (0, 1000)),
        ("bytes=999-", (999, 1000)),
        ("bytes=-1", (999, 1000)),
        ("bytes=-1000", (0, 1000)),
        ("bytes=-5000", (0, 1000)),
        ("bytes=1-2,3-4", None),  # several: the whole
        ("bytes=1-2,2000-", None),  # one of them satisfiable: the whole
        ("bytes=5-4", None),  # invalid: ignored
        ("bytes=1-2,x", None),
        ("bytes=--1", None),
        ("bytes=1", None),
        ("none", None),
        ("lines=1-2", None),
        ("bytes=" + ",".join(["1-2"] * 101), None),
    ],
)
def test_range_headers(header: str | None, expected: tuple[int, int] | None) -> None:
    got = requested_range(header, 1000)
    assert (None if got is None else (got.start, got.end)) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=-0", "bytes=1000-1001,2000-"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as caught:
        requested_range(header, 1000)
    assert caught.value.content_range == "bytes */1000"


def test_the_content_range_names_the_last_byte() -> None:
    assert ByteRange(10, 20, 100).content_range == "bytes 10-19/100"


@given(st.text(max_size=40), st.integers(min_value=1, max_value=10**9))
def test_any_header_gives_an_answer_within_the_size(header: str, size: int) -> None:
    try:
        got = requested_range(header, size)
    except RangeNotSatisfiable as exc:
        assert exc.size == size
        return
    assert got is None or 0 <= got.start < got.end <= size


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6))
def test_first_last_is_exact(first: int, last: int, size: int) -> None:
    header = f"bytes={first}-{last}"
    if last < first:
        assert requested_range(header, size) is None
    elif first >= size:
        with pytest.raises(RangeNotSatisfiable):
            requested_range(header, size)
    else:
        assert requested_range(header, size) == ByteRange(first, min(last + 1, size), size)
