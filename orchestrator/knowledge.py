"""An agent's knowledge as passages: documents split into chunks a caller can be read.

Pure code (text in, chunks out). A document is read as light Markdown, which
plain text and a PDF's extracted text also are:

- ATX headings (``#`` to ``######``) open a section; the heading stays with
  the paragraphs under it (each chunk carries its section's heading), so an
  FAQ's question travels with its answer. Text before the first heading has
  the heading ``""``. ``#`` lines inside fenced code blocks are text.
- Paragraphs are blocks of lines between blank lines; the lines of a
  paragraph are joined with single spaces, except list items (``-``, ``*``,
  ``+``, ``1.``), which keep a line each, as ``- item``.
- Inline markup a listener cannot hear is dropped: emphasis markers,
  backticks, link targets (``[text](url)`` is ``text``), images, HTML tags.
- A section longer than :data:`MAX_CHUNK_CHARS` is split between paragraphs,
  a paragraph too long by sentences, a sentence too long between words (and
  a word too long, between characters); pieces are packed greedily, so the
  chunks of a long section hold about 500-800 characters, all but its last
  near :data:`MAX_CHUNK_CHARS`.

Every chunk is non-empty and at most :data:`MAX_CHUNK_CHARS` long, and the
words of a section's chunks, in order, are the words of its paragraphs.
Sections with no text (a heading directly followed by another) make no chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, final

from .agents import KnowledgeSource

__all__ = [
    "MAX_CHUNK_CHARS",
    "Chunk",
    "chunk_document",
    "chunk_sources",
    "questions",
]

MAX_CHUNK_CHARS: Final = 800
"""The longest chunk, in characters (about 45 seconds of speech)."""

_HEADING: Final = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE: Final = re.compile(r"^ {0,3}(```|~~~)")
_LIST_ITEM: Final = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])\s+(.*)$")
_IMAGE: Final = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK: Final = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_TAG: Final = re.compile(r"</?[A-Za-z][^<>]*>")
_EMPHASIS: Final = re.compile(r"(\*{1,3}|_{2,3}|`+)")
_RULE: Final = re.compile(r"^\s*([-=*_])(\s*\1){2,}\s*$")
_SPACE_BEFORE_PUNCTUATION: Final = re.compile(r" ([.,;:!?])(?=\s|$)")
_SENTENCE_END: Final = re.compile(r"(?<=[.!?])\s+")


@final
@dataclass(frozen=True, slots=True)
class Chunk:
    """One passage of an agent's knowledge.

    Attributes:
        source: the document it comes from (:attr:`KnowledgeSource.source`).
        heading: the heading of its section (``""`` before the first heading).
        position: its index among the agent's chunks (0, 1, ...), in document order.
        text: the passage: paragraphs separated by blank lines, at most
            :data:`MAX_CHUNK_CHARS` characters, never blank.
    """

    source: str
    heading: str
    position: int
    text: str


def _clean_inline(text: str) -> str:
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    text = _EMPHASIS.sub("", text)
    return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(text.split()))


def _sections(text: str) -> Iterator[tuple[str, list[str]]]:
    """``(heading, paragraphs)`` per section, paragraphs cleaned and non-empty."""
    heading = ""
    paragraphs: list[str] = []
    block: list[str] = []
    fenced = False

    def end_block() -> None:
        if not block:
            return
        items: list[str] = []
        listed = False
        for line in block:
            item = _LIST_ITEM.match(line)
            if item is not None:
                listed = True
                items.append("- " + _clean_inline(item.group(1)))
            elif items:  # the paragraph's (or the list item's) next line
                items[-1] = f"{items[-1]} {_clean_inline(line)}".rstrip()
            else:
                items.append(_clean_inline(line))
        items = [i for i in items if i.strip("- ")]
        paragraph = ("\n" if listed else " ").join(items)
        if paragraph.strip():
            paragraphs.append(paragraph)
        block.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            end_block()
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match is not None:
            end_block()
            if paragraphs:
                yield heading, paragraphs
            heading, paragraphs = _clean_inline(match.group(2) or ""), []
        elif _RULE.match(line) and not fenced:
            end_block()  # a thematic break or a setext underline: no words
        elif line.strip():
            block.append(line)
        else:
            end_block()
    end_block()
    if paragraphs:
        yield heading, paragraphs


def _split(text: str, limit: int) -> list[str]:
    """``text`` (no blank lines) in pieces of at most ``limit`` characters: by
    sentences, then words, then characters."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        if len(sentence) <= limit:
            pieces.append(sentence)
            continue
        for word in sentence.split():
            pieces.extend(word[i : i + limit] for i in range(0, len(word), limit))
    return _pack(pieces, " ", limit)


def _pack(pieces: Iterable[str], separator: str, limit: int) -> list[str]:
    packed: list[str] = []
    for piece in pieces:
        if packed and len(packed[-1]) + len(separator) + len(piece) <= limit:
            packed[-1] += separator + piece
        else:
            packed.append(piece)
    return packed


def chunk_document(source: str, text: str, *, first_position: int = 0) -> list[Chunk]:
    """Split one document into chunks (see the module docstring for the rules).

    Args:
        source: the document's name, kept on each chunk.
        text: the document (Markdown, plain text, or a PDF's extracted text).
        first_position: the position of the first chunk.

    Returns:
        The chunks in document order, numbered from ``first_position``; empty
        when the document has no text.
    """
    chunks: list[Chunk] = []
    for heading, paragraphs in _sections(text):
        pieces = [p for paragraph in paragraphs for p in _split(paragraph, MAX_CHUNK_CHARS)]
        for body in _pack(pieces, "\n\n", MAX_CHUNK_CHARS):
            chunks.append(Chunk(source, heading, first_position + len(chunks), body))
    return chunks


def chunk_sources(sources: Iterable[KnowledgeSource]) -> list[Chunk]:
    """Every document's chunks, in order, positions numbered 0, 1, ... across them."""
    chunks: list[Chunk] = []
    for source in sources:
        chunks += chunk_document(source.source, source.text, first_position=len(chunks))
    return chunks


def questions(sources: Iterable[KnowledgeSource]) -> tuple[str, ...]:
    """The headings phrased as questions (ending with ``?``), without the ``?``, each once:
    what a caller may ask, for the local provider's speech recognition."""
    found: dict[str, None] = {}
    for source in sources:
        for heading, _ in _sections(source.text):
            if heading.endswith("?"):
                found.setdefault(heading.rstrip("?").strip(), None)
    return tuple(q for q in found if q)
