"""HTTP ``Range: bytes=...`` requests, per RFC 9110 section 14 (pure; no I/O).

:func:`requested_range` reads a ``Range`` header against a representation of
``size`` bytes and says which of three answers the server gives:

* ``None``: the whole representation, ``200`` (no header; a unit other than
  ``bytes``; a header that does not parse, which section 14.2 lets a server
  ignore; or several ranges of which one at least is satisfiable: this server
  answers those with the whole representation, which section 14.2 allows,
  rather than a ``multipart/byteranges`` body);
* a :class:`ByteRange`: ``206`` with ``Content-Range: bytes first-last/size``;
* :class:`RangeNotSatisfiable` raised: ``416`` with ``Content-Range: bytes */size``
  (no range of the request is satisfiable: every ``first-pos`` at or past the
  end, or a suffix of length 0).

Forms (section 14.1.2): ``first-last`` (``last`` past the end is cut to the end),
``first-`` (to the end), ``-suffix`` (the last ``suffix`` bytes, the whole if
longer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, final

__all__ = ["ByteRange", "RangeNotSatisfiable", "requested_range"]

_SPEC: Final = re.compile(r"^([0-9]*)-([0-9]*)$")
MAX_RANGES: Final = 100
"""A header with more ranges than this is ignored (answered whole), unread."""


@final
@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` (exclusive) of a representation of ``size`` bytes."""

    start: int
    end: int
    size: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= self.size:
            raise ValueError(f"not a byte range of {self.size} bytes: {self.start}..{self.end}")

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` value of the 206 answer (``last`` is inclusive)."""
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


class RangeNotSatisfiable(ValueError):  # noqa: N818 - the status's own name (RFC 9110 15.5.17)
    """No range of the request lies within the representation: answer 416."""

    def __init__(self, size: int) -> None:
        super().__init__(f"no requested range is within the {size} bytes")
        self.size = size

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` value of the 416 answer."""
        return f"bytes */{self.size}"


def requested_range(header: str | None, size: int) -> ByteRange | None:
    """The part of a ``size``-byte representation a ``Range`` header asks for.

    Returns None for the whole representation (see the module docstring).

    Raises:
        RangeNotSatisfiable: no range of the header is satisfiable.
    """
    if header is None:
        return None
    unit, sep, specs = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    parts = [p.strip() for p in specs.split(",") if p.strip()]  # empty elements: 5.6.1
    if not parts or len(parts) > MAX_RANGES:
        return None
    ranges: list[ByteRange | None] = []
    for part in parts:
        match = _SPEC.match(part)
        if match is None or match[0] == "-":
            return None  # not a range-spec: the whole header is ignored
        first, last = match[1], match[2]
        if first and last and int(last) < int(first):
            return None  # an invalid int-range (section 14.1.1)
        ranges.append(_resolve(first, last, size))
    satisfiable = [r for r in ranges if r is not None]
    if not satisfiable:
        raise RangeNotSatisfiable(size)
    if len(ranges) > 1:
        return None
    return satisfiable[0]


def _resolve(first: str, last: str, size: int) -> ByteRange | None:
    """One range-spec against ``size`` bytes; None when it is not satisfiable."""
    if not first:  # suffix-range: -N
        suffix = int(last)
        if suffix == 0 or size == 0:
            return None
        return ByteRange(max(0, size - suffix), size, size)
    start = int(first)
    if start >= size:
        return None
    end = size if not last else min(int(last) + 1, size)
    return ByteRange(start, end, size)
