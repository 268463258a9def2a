"""Sentence splitting of streamed text, so speech can start before the text ends. Pure code.

Feed text deltas as a language model streams them; :meth:`SentenceSplitter.feed`
returns each sentence once it is known to be complete: a ``.``, ``!``, ``?``
or ``…`` (optionally followed by closing quotes or brackets) followed by
whitespace, or a line break. A full stop after a lone capital letter or a
common abbreviation (``Dr.``, ``e.g.``) or inside a number (``3.5``) does not
end a sentence. :meth:`flush` returns what is left at the end of the stream.

Every character fed comes out exactly once, in order (sentences keep their
trailing whitespace), so ``"".join(outputs) == "".join(inputs)`` for any
chunking of the same text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

__all__ = ["SentenceSplitter", "heard_text"]

_BOUNDARY: Final = re.compile(r"(?:[.!?…]+[\"')\]]*\s+|\n+\s*)")
_ABBREVIATIONS: Final = frozenset(
    {"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "a.m", "p.m", "no", "jr", "sr"}
)
MIN_CHARS: Final = 2
"""A sentence needs at least this many non-space characters (``"1."`` of a list does)."""


class SentenceSplitter:
    """Accumulates streamed text and hands out complete sentences (see the module doc)."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, delta: str) -> list[str]:
        """Add ``delta``; return the sentences it completed (possibly none)."""
        self._buffer += delta
        out: list[str] = []
        start = 0
        for match in _BOUNDARY.finditer(self._buffer):
            candidate = self._buffer[start : match.end()]
            if not _ends_sentence(self._buffer[start : match.start()], match.group()):
                continue
            if len(candidate.strip()) < MIN_CHARS:
                continue
            out.append(candidate)
            start = match.end()
        self._buffer = self._buffer[start:]
        return out

    def flush(self) -> str:
        """The text not yet returned (the last sentence, maybe unfinished); resets."""
        rest, self._buffer = self._buffer, ""
        return rest


def _ends_sentence(before: str, boundary: str) -> bool:
    if boundary.lstrip(" \t").startswith("\n"):
        return True
    if not boundary.startswith("."):
        return True
    word = before.rsplit(None, 1)[-1] if before.split() else ""
    word = word.lstrip("\"'([")
    if len(word) == 1 and word.isalpha() and word.isupper():
        return False  # an initial: "J. Smith"
    return word.lower() not in _ABBREVIATIONS


def heard_text(segments: Sequence[tuple[str, float]], heard_ms: float) -> str:
    """The part of a response the caller heard before ``heard_ms`` of its audio.

    ``segments`` are the response's spoken pieces in order, each ``(text,
    audio_ms)``. Whole segments count while their audio fits in ``heard_ms``;
    of the segment playing at the cut, the share of its words proportional to
    the share of its audio that played is kept (a word counts once its last
    character is within that share). Returns the kept words joined by single
    spaces ("" when nothing was heard).
    """
    kept: list[str] = []
    left = heard_ms
    for text, audio_ms in segments:
        if left <= 0:
            break
        if audio_ms <= left:
            kept.extend(text.split())
            left -= audio_ms
            continue
        limit = len(text.strip()) * left / audio_ms
        position = 0
        for word in text.split():
            position = text.index(word, position) + len(word)
            if position - (len(text) - len(text.lstrip())) > limit:
                break
            kept.append(word)
        break
    return " ".join(kept)
