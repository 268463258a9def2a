"""Knowledge documents: the agent file's ``knowledge:`` key (inline text, Markdown, plain
text, PDF) and the chunker that splits them into passages a caller can be read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.orchestrator.agent_file import load_agent_file, parse_agent_yaml
from switchboard.orchestrator.agents import AgentSpec, KnowledgeSource
from switchboard.orchestrator.errors import AgentFileError
from switchboard.orchestrator.knowledge import (
    MAX_CHUNK_CHARS,
    chunk_document,
    chunk_sources,
    questions,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "receptionist.yaml"

AGENT = """\
name: front-desk
tenant: acme
greeting: Hello.
intents: []
knowledge:
"""


def words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text)


def make_pdf(pages: list[list[str]]) -> bytes:
    """A PDF whose pages show ``lines`` in Helvetica (written by hand: objects, xref, trailer)."""
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for lines in pages:
        ops = "".join(
            f"BT /F1 12 Tf 72 {720 - 16 * i} Td ({line}) Tj ET\n" for i, line in enumerate(lines)
        ).encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(ops) + ops + b"endstream")
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % len(objects)
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


# -- the agent file ---------------------------------------------------------------


def test_the_example_agent_reads_its_faq_and_offers_search_knowledge() -> None:
    spec = load_agent_file(EXAMPLE)
    (faq,) = spec.knowledge
    assert faq.source == "knowledge/faq.md"
    assert "## Do you take insurance?" in faq.text
    assert "search_knowledge" in {t.name for t in spec.function_tools()}
    assert AgentSpec.from_json(spec.to_json()) == spec


def test_search_knowledge_is_offered_only_to_an_agent_with_knowledge() -> None:
    without = parse_agent_yaml(AGENT.replace("knowledge:\n", ""))
    assert "search_knowledge" not in {t.name for t in without.function_tools()}
    assert "knowledge" not in without.to_json()  # older specs keep their version hash


def test_inline_text_with_and_without_a_title(tmp_path: Path) -> None:
    text = AGENT + (
        "  - {title: Parking, text: Free parking behind the building.}\n"
        "  - text: We are closed on public holidays.\n"
    )
    spec = parse_agent_yaml(text, str(tmp_path / "agent.yaml"))
    parking, holidays = spec.knowledge
    assert parking == KnowledgeSource("Parking", "# Parking\n\nFree parking behind the building.")
    assert holidays == KnowledgeSource("inline[1]", "We are closed on public holidays.")
    chunks = chunk_sources(spec.knowledge)
    assert [(c.source, c.heading, c.text) for c in chunks] == [
        ("Parking", "Parking", "Free parking behind the building."),
        ("inline[1]", "", "We are closed on public holidays."),
    ]


def test_files_are_read_relative_to_the_agent_file(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "faq.md").write_text("# FAQ\n\n## Is there parking?\n\nYes, behind the building.\n")
    (docs / "notes.txt").write_text("\ufeffWe speak English and Spanish.\n")
    (docs / "prices.pdf").write_bytes(
        make_pdf([["# Prices", "A cleaning costs 120 dollars."], ["Whitening costs 300 dollars."]])
    )
    agent = tmp_path / "agent.yaml"
    agent.write_text(
        AGENT + "  - file: docs/faq.md\n  - file: docs/notes.txt\n  - file: docs/prices.pdf\n"
    )
    spec = load_agent_file(agent)
    assert [k.source for k in spec.knowledge] == [
        "docs/faq.md",
        "docs/notes.txt",
        "docs/prices.pdf",
    ]
    assert spec.knowledge[1].text == "We speak English and Spanish.\n"  # no byte-order mark
    pdf = chunk_document("docs/prices.pdf", spec.knowledge[2].text)
    assert [(c.heading, c.text) for c in pdf] == [
        ("Prices", "A cleaning costs 120 dollars.\n\nWhitening costs 300 dollars.")
    ]


@pytest.mark.parametrize(
    ("entry", "files", "line", "key", "message"),
    [
        ("  - file: missing.md\n", {}, 6, "knowledge[0].file", "missing.md: no such file"),
        (
            "  - file: slides.pptx\n",
            {"slides.pptx": b"PK"},
            6,
            "knowledge[0].file",
            "slides.pptx: cannot read a file with '.pptx' (expected one of: .md,",
        ),
        (
            "  - file: scan.pdf\n",
            {"scan.pdf": make_pdf([[], []])},
            6,
            "knowledge[0].file",
            "scan.pdf: the PDF has no extractable text (2 page(s); a scan needs OCR",
        ),
        (
            "  - file: broken.pdf\n",
            {"broken.pdf": b"%PDF-1.4\nnot really\n"},
            6,
            "knowledge[0].file",
            "broken.pdf: not a readable PDF",
        ),
        ("  - file: empty.txt\n", {"empty.txt": b" \n\n"}, 6, "knowledge[0].file", "no text"),
        (
            "  - file: latin1.txt\n",
            {"latin1.txt": b"ok\ncaf\xe9\n"},
            6,
            "knowledge[0].file",
            "latin1.txt: line 2 is not UTF-8 text",
        ),
        ("  - {}\n", {}, 6, "knowledge[0]", "expected either 'text' or 'file'"),
        ("  - {text: a, file: b.md}\n", {}, 6, "knowledge[0]", "either 'text' or 'file'"),
        ("  - {file: a.md, title: A}\n", {"a.md": b"x"}, 6, "knowledge[0].title", "its name"),
        ("  - {txt: hello}\n", {}, 6, "knowledge[0].txt", "did you mean 'text'?"),
        ("  - text: '  '\n", {}, 6, "knowledge[0].text", "must not be empty"),
        ("  - {text: a, title: A}\n  - {text: b, title: A}\n", {}, 7, "knowledge[1]", "twice"),
        ("  text: hello\n", {}, 6, "knowledge", "expected a list of documents, got a mapping"),
    ],
)
def test_a_bad_entry_names_the_file_line_and_key(
    tmp_path: Path, entry: str, files: dict[str, bytes], line: int, key: str, message: str
) -> None:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    agent = tmp_path / "agent.yaml"
    agent.write_text(AGENT + entry)
    with pytest.raises(AgentFileError) as caught:
        load_agent_file(agent)
    assert (caught.value.line, caught.value.key) == (line, key)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{agent}:{line}: key '{key}'")


# -- the chunker ------------------------------------------------------------------


def test_markdown_keeps_each_heading_with_its_paragraphs() -> None:
    text = (
        "Intro line one\nline two.\n\n"
        "# Billing\n\n"
        "## Do you take **insurance**?\n\n"
        "Yes, see [our list](https://example.com/list).\n\n"
        "We bill your insurer:\n- Delta\n- Cigna\n  and others\n\n"
        "## Empty section?\n"
        "## Parking ##\n\n"
        "```\n# not a heading\n```\n\n"
        "---\n"
        "Behind the <b>building</b>.\n"
    )
    chunks = chunk_document("faq.md", text, first_position=5)
    assert [(c.position, c.heading, c.text) for c in chunks] == [
        (5, "", "Intro line one line two."),
        (
            6,
            "Do you take insurance?",
            "Yes, see our list.\n\nWe bill your insurer:\n- Delta\n- Cigna and others",
        ),
        (7, "Parking", "# not a heading\n\nBehind the building."),
    ]
    assert all(c.source == "faq.md" for c in chunks)


def test_a_long_section_is_split_into_chunks_of_about_500_to_800_characters() -> None:
    sentence = "The practice offers cleanings, fillings and crowns for every patient. "
    paragraphs = "\n\n".join(sentence * 4 for _ in range(12))  # 12 x ~280 characters
    chunks = chunk_document("long.md", f"# Services\n\n{paragraphs}\n\n{sentence * 30}")
    assert len(chunks) > 4
    assert all(c.heading == "Services" for c in chunks)
    assert all(500 <= len(c.text) <= MAX_CHUNK_CHARS for c in chunks[:-1])
    assert words(" ".join(c.text for c in chunks)) == words(paragraphs + " " + sentence * 30)


def test_questions_are_the_headings_that_ask() -> None:
    sources = [
        KnowledgeSource("a.md", "# FAQ\n\n## Do you take insurance?\n\nYes.\n\n## Prices\n\nLow."),
        KnowledgeSource("b.md", "## Do you take insurance?\n\nStill yes.\n## Empty?\n"),
    ]
    assert questions(sources) == ("Do you take insurance",)


# Words start with a letter: a paragraph starting "12. " is an ordered list item in
# Markdown, whose number is markup.
WORD = st.from_regex(r"[a-z][a-z0-9]{0,39}", fullmatch=True)
SENTENCE = st.lists(WORD, min_size=1, max_size=60).map(lambda ws: " ".join(ws) + ".")
PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=12).map(" ".join)
SECTION = st.tuples(
    st.one_of(st.none(), st.lists(WORD, min_size=1, max_size=6).map(" ".join)),
    st.lists(PARAGRAPH, min_size=0, max_size=5),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(SECTION, min_size=1, max_size=6), st.text(min_size=1, max_size=20))
def test_any_document_gives_non_empty_bounded_chunks_that_keep_every_word_in_order(
    sections: list[tuple[str | None, list[str]]], source: str
) -> None:
    parts = []
    expected: list[tuple[str, list[str]]] = []  # (heading, words) of each section with text
    heading = ""
    for title, paragraphs in sections:
        if title is not None:
            parts.append(f"## {title}")
            heading = title
        parts.extend(paragraphs)
        if paragraphs:
            if expected and expected[-1][0] == heading and title is None:
                expected[-1][1].extend(words(" ".join(paragraphs)))
            else:
                expected.append((heading, words(" ".join(paragraphs))))
    chunks = chunk_document(source, "\n\n".join(parts))
    assert all(c.text.strip() and len(c.text) <= MAX_CHUNK_CHARS for c in chunks)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(c.source == source for c in chunks)
    got: list[tuple[str, list[str]]] = []
    for chunk in chunks:
        if got and got[-1][0] == chunk.heading and chunk.position > 0:
            got[-1][1].extend(words(chunk.text))
        else:
            got.append((chunk.heading, words(chunk.text)))
    assert [w for _, ws in got for w in ws] == [w for _, ws in expected for w in ws]
    assert {h for h, _ in got} <= {h for h, _ in expected}


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=3000))
def test_any_text_at_all_chunks_without_error_or_empty_chunks(text: str) -> None:
    chunks = chunk_document("any.txt", text)
    assert all(c.text.strip() and len(c.text) <= MAX_CHUNK_CHARS for c in chunks)


def test_a_spec_with_a_document_twice_or_an_empty_one_is_refused() -> None:
    base = parse_agent_yaml(AGENT.replace("knowledge:\n", ""))
    doc = KnowledgeSource("a.md", "Text.")
    with pytest.raises(ValueError, match="twice"):
        AgentSpec.from_json({**base.to_json(), "knowledge": [vars_of(doc), vars_of(doc)]})
    with pytest.raises(ValueError, match="empty"):
        AgentSpec.from_json({**base.to_json(), "knowledge": [{"source": "a.md", "text": " "}]})


def vars_of(source: KnowledgeSource) -> dict[str, str]:
    return {"source": source.source, "text": source.text}
