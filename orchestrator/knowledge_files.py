"""Knowledge documents from files: Markdown, plain text, PDF (read when an agent is loaded).

Formats, by extension (case-insensitive):

- ``.md``, ``.markdown``, ``.txt``, ``.text``: UTF-8 text (a byte-order mark is
  dropped);
- ``.pdf``: the text of every page, extracted with ``pypdf`` (layout mode off:
  the reading order pypdf finds), pages separated by blank lines. A scanned PDF
  (images only) has no extractable text and is refused: it would index nothing.

Errors: :class:`KnowledgeFileError` (a ``ValueError``) with a sentence that
names the file and what is wrong; the agent-file parser adds the file, line
and key of the entry.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Final

import pypdf
from pypdf.errors import PdfReadError, PyPdfError

__all__ = ["KNOWLEDGE_EXTENSIONS", "KnowledgeFileError", "read_document"]

TEXT_EXTENSIONS: Final = (".md", ".markdown", ".txt", ".text")
KNOWLEDGE_EXTENSIONS: Final = (*TEXT_EXTENSIONS, ".pdf")
"""The file name endings a ``knowledge:`` file may have."""

MAX_DOCUMENT_BYTES: Final = 20 * 1024 * 1024
"""A larger file is refused (a knowledge document is read into memory and the spec)."""


class KnowledgeFileError(ValueError):
    """A knowledge file cannot be used: missing, unreadable, of an unknown kind, empty."""


def read_document(path: Path, shown_as: str) -> str:
    """The text of the knowledge document at ``path``.

    Args:
        path: the file.
        shown_as: its name in error messages (as the agent file wrote it).

    Raises:
        KnowledgeFileError: the file is missing or unreadable, its extension is
            not one of :data:`KNOWLEDGE_EXTENSIONS`, a text file is not UTF-8, a PDF
            is damaged or has no extractable text, or either holds no text at all.
    """
    suffix = path.suffix.lower()
    if suffix not in KNOWLEDGE_EXTENSIONS:
        kind = f"'{path.suffix}'" if path.suffix else "no extension"
        raise KnowledgeFileError(
            f"{shown_as}: cannot read a file with {kind}"
            f" (expected one of: {', '.join(KNOWLEDGE_EXTENSIONS)})"
        )
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise KnowledgeFileError(
                f"{shown_as}: {size} bytes, more than the {MAX_DOCUMENT_BYTES} a document may have"
            )
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise KnowledgeFileError(f"{shown_as}: no such file ({path})") from exc
    except OSError as exc:
        raise KnowledgeFileError(f"{shown_as}: cannot read: {exc.strerror or exc}") from exc
    text = _pdf_text(data, shown_as) if suffix == ".pdf" else _utf8(data, shown_as)
    if not text.strip():
        raise KnowledgeFileError(f"{shown_as}: the file has no text")
    return text


def _utf8(data: bytes, shown_as: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise KnowledgeFileError(f"{shown_as}: line {line} is not UTF-8 text") from exc


def _pdf_text(data: bytes, shown_as: str) -> str:
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings go to stderr otherwise
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError) as exc:
        raise KnowledgeFileError(f"{shown_as}: not a readable PDF ({exc})") from exc
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        raise KnowledgeFileError(
            f"{shown_as}: the PDF has no extractable text"
            f" ({len(pages)} page(s); a scan needs OCR before it can be used)"
        )
    return text
