"""Text from a peer made safe to keep: in an error's detail, in an event, in PostgreSQL.

PostgreSQL's ``text`` and ``jsonb`` refuse U+0000 and ``jsonb`` refuses a lone
UTF-16 surrogate escape (PostgreSQL docs, "JSON Types": "\\u0000 is disallowed";
"Character Set Support"), so a string from the wire that holds either cannot be
logged as a call event: the whole batch of events it is in would be refused.
Every wire parser therefore refuses such strings where it keeps them
(:func:`storable`) and quotes the peer's text in its error details with
:func:`quote` (escaped, bounded).
"""

from __future__ import annotations

import re
from typing import Final

DETAIL_CHARS: Final = 200
"""The longest error detail a parser gives (a peer's text in it is cut to fit)."""

_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
_UNPRINTABLE: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e]")


def storable(text: str) -> bool:
    """Whether ``text`` can be stored in PostgreSQL (no U+0000, no lone surrogate)."""
    return _UNSTORABLE.search(text) is None


def quote(text: str, limit: int = DETAIL_CHARS) -> str:
    """``text`` for an error detail: control characters, surrogates and bidirectional
    overrides escaped (``\\x00``, ``\\ud800``), at most ``limit`` characters."""
    escaped = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."
