"""Sentence splitting of streamed text, and cutting an answer to what was heard.

A caller would notice: a word dropped or doubled in speech, speech waiting
for the whole answer, a sentence cut at "Dr." or "3.5", or an agent that
later refers to words the caller never heard.
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from switchboard.actors.pipeline import SentenceSplitter, heard_text

TEXT = "Hello there! Dr. Smith sees patients at 3.5 p.m. on Mondays. Is that OK?\nBye"


def split(deltas: list[str]) -> list[str]:
    splitter = SentenceSplitter()
    out = [s for d in deltas for s in splitter.feed(d)]
    rest = splitter.flush()
    return [*out, rest] if rest else out


def test_sentences_come_out_as_soon_as_they_are_complete() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("We are open") == []
    assert splitter.feed(" today. Until") == ["We are open today. "]
    assert splitter.feed(" six.") == []  # the stream may go on: "six.5"?
    assert splitter.flush() == "Until six."


def test_abbreviations_initials_and_decimals_do_not_end_a_sentence() -> None:
    assert [s.strip() for s in split([TEXT])] == [
        "Hello there!",
        "Dr. Smith sees patients at 3.5 p.m. on Mondays.",
        "Is that OK?",
        "Bye",
    ]


@st.composite
def chunkings(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=12)))
    edges = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(edges)]


@given(st.data())
def test_any_chunking_gives_the_same_sentences_and_loses_nothing(data: st.DataObject) -> None:
    text = data.draw(
        st.one_of(
            st.just(TEXT),
            st.text(alphabet="ab .!?\n\"'3DrJ", max_size=60),
        )
    )
    deltas = data.draw(chunkings(text))
    out = split(deltas)
    assert "".join(out) == text
    assert [s.strip() for s in out if s.strip()] == [s.strip() for s in split([text]) if s.strip()]


def test_heard_text_keeps_whole_segments_then_a_proportional_share_of_words() -> None:
    segments = [("Hello there. ", 1000.0), ("We are open nine to five.", 2000.0)]
    assert heard_text(segments, 0) == ""
    assert heard_text(segments, 1000) == "Hello there."
    assert heard_text(segments, 2000) == "Hello there. We are open"  # 12 of 25 chars
    assert heard_text(segments, 5000) == "Hello there. We are open nine to five."


@given(
    st.lists(st.tuples(st.text(alphabet="ab .", max_size=20), st.floats(0, 5000)), max_size=5),
    st.floats(0, 30000),
    st.floats(0, 30000),
)
def test_hearing_more_never_means_fewer_words(
    segments: list[tuple[str, float]], a: float, b: float
) -> None:
    short, long = sorted((a, b))
    fewer, more = heard_text(segments, short), heard_text(segments, long)
    assert more.startswith(fewer)
    assert len(more.split()) <= sum(len(t.split()) for t, _ in segments)
