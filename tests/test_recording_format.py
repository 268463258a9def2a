"""The sealed recording file: what goes in comes out sample-exact; anything else is refused."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switchboard.codecs.recording_format import (
    MAGIC,
    MAX_SEGMENT_BYTES,
    Kind,
    Record,
    RecordingCorrupt,
    RecordingHeader,
    SegmentWriter,
    TrackFormat,
    WrappedKey,
    read_header,
    read_records,
)

KEY = bytes(range(32))


def header(**overrides: object) -> RecordingHeader:
    fields: dict[str, object] = {
        "session_id": "6f1c2a1e-3c4b-4d5e-8f90-0a1b2c3d4e5f",
        "tenant_id": "0b9d5a52-8a86-4b1f-a0e7-5f8f0f7a2c11",
        "caller": TrackFormat("pcmu", 8000),
        "agent": TrackFormat("pcmu", 8000),
        "started_at": "2026-12-04T15:00:00+00:00",
        "key": WrappedKey("keyring", "k1"),
    }
    fields.update(overrides)
    return RecordingHeader(**fields)  # type: ignore[arg-type]


def call_records(seconds: int, seed: int = 1) -> list[list[Record]]:
    """One flush per second: 50 caller and 50 agent frames of 160 mu-law bytes, a clear."""
    rng = __import__("random").Random(seed)
    flushes = []
    for s in range(seconds):
        flush = []
        for i in range(50):
            t = s * 1000 + i * 20 + rng.random()
            flush.append(Record(Kind.CALLER_AUDIO, t, rng.randbytes(160)))
            flush.append(Record(Kind.AGENT_AUDIO, t + 0.5, rng.randbytes(160)))
        flush.append(Record(Kind.AGENT_CLEARED, s * 1000 + 999.0, b""))
        flush.append(Record(Kind.PROVIDER_EVENT, s * 1000 + 999.5, b"\x03\x01abc{}"))
        flushes.append(flush)
    return flushes


def seal(flushes: list[list[Record]], key: bytes = KEY, **kw: object) -> bytes:
    writer = SegmentWriter(key, header(**kw))
    parts = [writer.start()]
    parts += [writer.seal(flush) for flush in flushes[:-1]]
    parts.append(writer.seal(flushes[-1] if flushes else [], last=True))
    return b"".join(parts)


def segments(blob: bytes) -> tuple[bytes, list[bytes]]:
    """The file's header bytes and its segments (length word included), per the layout."""
    (size,) = struct.unpack_from(">I", blob, len(MAGIC) + 2)
    pos = len(MAGIC) + 6 + size
    head, segs = blob[:pos], []
    while pos < len(blob):
        (word,) = struct.unpack_from(">I", blob, pos)
        end = pos + 4 + (word & 0x7FFF_FFFF)
        segs.append(blob[pos:end])
        pos = end
    return head, segs


FLUSHES = call_records(4)
RECORDS = [r for flush in FLUSHES for r in flush]
BLOB = seal(FLUSHES)
HEAD, SEGMENTS = segments(BLOB)


def test_round_trip_is_exact() -> None:
    got_header, got = read_records(BLOB, KEY)
    assert got == RECORDS  # kinds, t_ms (float64) and bytes, in order
    assert got_header == read_header(BLOB) == read_header(HEAD)
    assert got_header.caller == TrackFormat("pcmu", 8000)
    assert len(SEGMENTS) == len(FLUSHES)  # one segment per flush


def test_header_without_key_and_rsa_wrapped_key_travels() -> None:
    h = header(key=WrappedKey("rsa", "rsa:0123456789abcdef", b"\x01" * 256))
    writer = SegmentWriter(KEY, h)
    blob = writer.start() + writer.seal([], last=True)
    assert read_header(blob).key.wrapped == b"\x01" * 256
    assert read_records(blob, KEY) == (h, [])


def test_a_large_flush_is_split_below_the_segment_size() -> None:
    big = [Record(Kind.PROVIDER_EVENT, 1.0, os.urandom(MAX_SEGMENT_BYTES + 5000))]
    frames = [Record(Kind.CALLER_AUDIO, float(i), os.urandom(160)) for i in range(20000)]
    blob = seal([big, frames])
    _, segs = segments(blob)
    assert len(segs) >= 4
    assert all(len(s) <= 4 + MAX_SEGMENT_BYTES + 16 for s in segs)
    assert read_records(blob, KEY)[1] == big + frames


def test_small_segments_round_trip_records_spanning_segments() -> None:
    writer = SegmentWriter(KEY, header(), max_segment_bytes=7)
    blob = writer.start() + writer.seal(FLUSHES[0]) + writer.seal(FLUSHES[1], last=True)
    assert read_records(blob, KEY)[1] == FLUSHES[0] + FLUSHES[1]


def test_no_plaintext_audio_in_the_file() -> None:
    pcm_run = bytes(range(256)) * 8
    records = [
        Record(Kind.CALLER_AUDIO, 20.0 * i, pcm_run[i * 160 : (i + 1) * 160]) for i in range(12)
    ]
    blob = seal([records])
    assert read_records(blob, KEY)[1] == records
    for i in range(0, len(pcm_run) - 16, 16):
        assert pcm_run[i : i + 16] not in blob


def test_nothing_to_append_for_an_empty_flush_and_nothing_after_the_last() -> None:
    writer = SegmentWriter(KEY, header())
    writer.start()
    assert writer.seal([]) == b""
    writer.seal([], last=True)
    with pytest.raises(RuntimeError, match="finished"):
        writer.seal(FLUSHES[0])


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", r"not a Switchboard recording \(the file is empty\)"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "not a Switchboard recording"),
        (
            MAGIC + b"\x00\x09" + BLOB[len(MAGIC) + 2 :],
            r"format version 9 is not supported \(this build reads 1\)",
        ),
        (BLOB[:20], "truncated: the header is cut short"),
        (HEAD, r"truncated: the last segment is missing \(the call's writer did not finish\)"),
        (BLOB[:-1], "truncated: segment 4 is cut short"),
        (BLOB + b"\x00", "1 bytes follow the last segment"),
        (HEAD + SEGMENTS[0] + SEGMENTS[2] + SEGMENTS[3], "segment 2 failed authentication"),
        (
            HEAD + SEGMENTS[1] + SEGMENTS[0] + SEGMENTS[2] + SEGMENTS[3],
            "segment 1 failed authentication",
        ),
        (HEAD + b"".join(SEGMENTS[:3]), "truncated: the last segment is missing"),
        (HEAD + SEGMENTS[0] + SEGMENTS[3], "segment 2 failed authentication"),
        (HEAD + SEGMENTS[0] + SEGMENTS[0], "segment 2 failed authentication"),
    ],
    ids=[
        "empty",
        "wav",
        "version",
        "cut-header",
        "no-segments",
        "cut-last",
        "trailing",
        "dropped",
        "swapped",
        "no-last",
        "last-moved-up",
        "repeated",
    ],
)
def test_refusals_say_what_is_wrong(blob: bytes, message: str) -> None:
    with pytest.raises(RecordingCorrupt, match=message):
        read_records(blob, KEY)


def test_wrong_key_fails_on_the_first_segment() -> None:
    with pytest.raises(
        RecordingCorrupt,
        match="segment 1 failed authentication: the file was altered or the key is wrong",
    ):
        read_records(BLOB, bytes(32))


def test_segments_or_header_from_another_recording_are_refused() -> None:
    other = seal(FLUSHES)  # same key and content, its own nonce prefix
    other_head, other_segs = segments(other)
    with pytest.raises(RecordingCorrupt, match="segment 1 failed"):
        read_records(other_head + b"".join(SEGMENTS), KEY)
    with pytest.raises(RecordingCorrupt, match="segment 2 failed"):
        read_records(HEAD + SEGMENTS[0] + b"".join(other_segs[1:]), KEY)


def test_an_altered_header_field_is_caught_by_authentication() -> None:
    altered = BLOB.replace(b'"kid":"k1"', b'"kid":"k2"', 1)
    assert read_header(altered).key.kid == "k2"  # unauthenticated read sees the change
    with pytest.raises(RecordingCorrupt, match="segment 1 failed authentication"):
        read_records(altered, KEY)


def test_allow_truncated_gives_the_verified_flushes_of_a_crashed_call() -> None:
    crashed = HEAD + b"".join(SEGMENTS[:3]) + SEGMENTS[3][:50]
    assert read_records(crashed, KEY, allow_truncated=True)[1] == RECORDS[: 3 * len(FLUSHES[0])]
    assert read_records(HEAD, KEY, allow_truncated=True)[1] == []
    with pytest.raises(RecordingCorrupt, match="segment 2 failed"):  # altered, not truncated
        read_records(HEAD + SEGMENTS[0] + SEGMENTS[2], KEY, allow_truncated=True)


def test_header_fields_are_checked() -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        header(started_at="yesterday")
    with pytest.raises(ValueError, match="UTC offset"):
        header(started_at="2026-12-04T15:00:00")
    with pytest.raises(ValueError, match="wrapped bytes"):
        WrappedKey("rsa", "rsa:00")
    with pytest.raises(ValueError, match="32 bytes"):
        SegmentWriter(b"short", header())


def is_prefix(got: list[Record]) -> bool:
    return got == RECORDS[: len(got)]


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_flipped_byte_is_refused_never_misread(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(BLOB) - 1), label="index")
    bit = data.draw(st.integers(0, 7), label="bit")
    altered = bytearray(BLOB)
    altered[index] ^= 1 << bit
    with pytest.raises(RecordingCorrupt):
        read_records(bytes(altered), KEY)
    try:  # allowing a crashed call's end: a verified prefix at most, never other data
        got = read_records(bytes(altered), KEY, allow_truncated=True)[1]
    except RecordingCorrupt:
        return
    assert is_prefix(got) and len(got) < len(RECORDS)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(BLOB) - 1))
def test_any_truncation_is_refused_or_an_exact_prefix_when_allowed(cut: int) -> None:
    with pytest.raises(RecordingCorrupt, match=r"truncated|not a Switchboard"):
        read_records(BLOB[:cut], KEY)
    try:
        got = read_records(BLOB[:cut], KEY, allow_truncated=True)[1]
    except RecordingCorrupt as exc:
        assert cut < len(HEAD), exc  # only a cut header leaves nothing to read
        return
    whole = sum(
        1 for s in range(len(SEGMENTS)) if len(HEAD) + sum(map(len, SEGMENTS[: s + 1])) <= cut
    )
    assert got == RECORDS[: whole * len(FLUSHES[0])]


@settings(max_examples=100, deadline=None)
@given(st.permutations(range(len(SEGMENTS))), st.integers(1, len(SEGMENTS)))
def test_segments_reordered_or_dropped_are_detected(order: list[int], keep: int) -> None:
    chosen = order[:keep]
    if chosen == list(range(len(SEGMENTS))):
        return  # the file itself
    blob = HEAD + b"".join(SEGMENTS[i] for i in chosen)
    with pytest.raises(RecordingCorrupt):
        read_records(blob, KEY)
    try:
        got = read_records(blob, KEY, allow_truncated=True)[1]
    except RecordingCorrupt:
        return
    assert is_prefix(got)
