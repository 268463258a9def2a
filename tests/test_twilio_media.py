"""Twilio Media Streams messages: both directions, and every way a frame can be bad."""

import json
from base64 import b64encode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.codecs import twilio_media as wire

# The example messages of Twilio's "Media Streams - WebSocket Messages" page.
TWILIO_START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "callSid": "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "tracks": ["inbound", "outbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"FirstName": "Jane", "LastName": "Doe"},
    },
    "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
}
TWILIO_MEDIA = {
    "event": "media",
    "sequenceNumber": "3",
    "media": {
        "track": "outbound",
        "chunk": "1",
        "timestamp": "5",
        "payload": "no+JhoaJjpzSHxAKBgYJDhtEopGKh4aIjZm7JhILBwYIDRg1qZSLh4aIjJevLBUM"
        "BwYHDBUsr5eMiIaHi5SpNRgNCAYHCxIm",
    },
    "streamSid": "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
}


_STOP_WITH_X = '{"event": "stop", "streamSid": "MZ", "x": '


def _media_with(field: str) -> str:
    return '{"event": "media", "streamSid": "MZ1", "media": {"payload": "AA==", ' + field + "}}"


def test_twilio_documented_start_parses() -> None:
    start = wire.parse_inbound(json.dumps(TWILIO_START))
    assert isinstance(start, wire.Start)
    assert start.stream_sid == "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    assert start.call_sid.startswith("CA")
    assert start.custom_parameters == {"FirstName": "Jane", "LastName": "Doe"}
    assert (start.encoding, start.sample_rate, start.channels) == ("audio/x-mulaw", 8000, 1)


def test_twilio_documented_media_parses_with_numbers_as_strings() -> None:
    media = wire.parse_inbound(json.dumps(TWILIO_MEDIA))
    assert isinstance(media, wire.Media)
    assert (media.chunk, media.timestamp_ms, media.track) == (1, 5, "outbound")
    assert len(media.payload) == 72


def test_what_the_encoder_sends_is_what_the_parser_reads() -> None:
    enc = wire.InboundEncoder("MZ1", "CA1", "AC1")
    start = wire.parse_inbound(enc.start({"token": "t"}))
    assert isinstance(start, wire.Start) and start.custom_parameters == {"token": "t"}
    first = wire.parse_inbound(enc.media(b"\xff" * 160))
    second = wire.parse_inbound(enc.media(b"\x00" * 160))
    assert isinstance(first, wire.Media) and isinstance(second, wire.Media)
    assert (first.chunk, first.timestamp_ms) == (1, 0)
    assert (second.chunk, second.timestamp_ms, second.payload) == (2, 20, b"\x00" * 160)
    dtmf, mark, stop = (wire.parse_inbound(t) for t in (enc.dtmf("7"), enc.mark("m"), enc.stop()))
    assert isinstance(dtmf, wire.Dtmf) and (dtmf.stream_sid, dtmf.digit) == ("MZ1", "7")
    assert isinstance(mark, wire.MarkPlayed) and (mark.stream_sid, mark.name) == ("MZ1", "m")
    assert isinstance(stop, wire.Stop) and (stop.call_sid, stop.account_sid) == ("CA1", "AC1")
    assert isinstance(wire.parse_inbound(enc.connected()), wire.Connected)


@pytest.mark.parametrize(
    "message",
    [
        wire.media("MZ1", b"\x01\x02"),
        wire.mark("MZ1", "response:r1"),
        wire.Clear("MZ1"),
    ],
)
def test_outbound_round_trip(message: wire.Outbound) -> None:
    assert wire.parse_outbound(wire.encode_outbound(message)) == message


def test_outbound_media_matches_twilios_shape() -> None:
    sent = json.loads(wire.encode_outbound(wire.media("MZ1", b"\xff\x7f")))
    assert sent == {"event": "media", "streamSid": "MZ1", "media": {"payload": "/38="}}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('{"streamSid": "MZ1"}', "missing_field"),
        ('{"event": "hello"}', "unknown_event"),
        ('{"event": "media", "streamSid": "MZ1"}', "missing_field"),
        ('{"event": "media", "streamSid": "MZ1", "media": {"payload": "***"}}', "bad_base64"),
        ('{"event": "media", "streamSid": "MZ1", "media": {"payload": 5}}', "bad_field"),
        (
            '{"event": "media", "streamSid": "MZ1", "media": {"payload": "AA==", "chunk": "x"}}',
            "bad_field",
        ),
        ('{"event": "start", "start": {"callSid": "CA1"}}', "missing_field"),
        (
            '{"event": "start", "streamSid": "MZ", '
            '"start": {"callSid": "C", "customParameters": {"a": 1}}}',
            "bad_field",
        ),
        ('{"event": "mark", "streamSid": "MZ1", "mark": {}}', "missing_field"),
        ('{"event": 5}', "bad_field"),
        # Numbers out of range are decode errors, never an exception deeper in.
        (_media_with('"timestamp": Infinity'), "invalid_json"),
        (_media_with('"timestamp": "' + "9" * 400 + '"'), "bad_field"),
        (_media_with('"timestamp": ' + "9" * 400), "bad_field"),
        (_media_with('"chunk": -1'), "bad_field"),
        (_media_with('"timestamp": 1.5'), "bad_field"),
        (
            '{"event": "start", "streamSid": "MZ", '
            '"start": {"callSid": "C", "mediaFormat": {"sampleRate": 1e400}}}',
            "bad_field",
        ),
        (
            '{"event": "start", "streamSid": "MZ", '
            '"start": {"callSid": "C", "mediaFormat": {"sampleRate": "Infinity"}}}',
            "bad_field",
        ),
        # Deep nesting (in a field the parser skips, or where it looks) is a named error.
        (_STOP_WITH_X + "[" * 30_000 + "]" * 30_000 + "}", None),
        (_STOP_WITH_X + '{"a":' * 10_000 + "1" + "}" * 10_001, None),
        ("[" * 30_000 + "]" * 30_000, "not_an_object"),
        # Twilio's frames are small: a long one is refused unread (issue 11: 786 KB taken).
        (_media_with('"payload": "' + "A" * wire.MAX_INBOUND_CHARS + '"'), "too_large"),
        ("[" * 100_000 + "]" * 100_000, "too_large"),
    ],
)
def test_malformed_frames_are_named(text: str | bytes, reason: str | None) -> None:
    if reason is None:  # deep JSON the parser need not look into: a message or a named error
        try:
            assert isinstance(wire.parse_inbound(text), wire.Stop)
        except wire.MediaStreamError as exc:
            assert exc.reason == "invalid_json"
        return
    with pytest.raises(wire.MediaStreamError) as caught:
        wire.parse_inbound(text)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


@given(
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=8), children, max_size=4)
            ),
            max_leaves=12,
        ).map(json.dumps),
    )
)
def test_any_input_gives_a_message_or_a_named_error(text: str | bytes) -> None:
    try:
        message = wire.parse_inbound(text)
    except wire.MediaStreamError as exc:
        assert exc.reason in wire.REASONS
    else:
        assert isinstance(
            message, (wire.Connected, wire.Start, wire.Media, wire.Dtmf, wire.MarkPlayed, wire.Stop)
        )


@given(st.binary(max_size=400))
def test_any_payload_survives_the_round_trip(payload: bytes) -> None:
    enc = wire.InboundEncoder("MZ1", "CA1", "AC1")
    media = wire.parse_inbound(enc.media(payload))
    assert isinstance(media, wire.Media) and media.payload == payload
    out = wire.parse_outbound(
        json.dumps(
            {
                "event": "media",
                "streamSid": "MZ1",
                "media": {"payload": b64encode(payload).decode()},
            }
        )
    )
    assert out == wire.media("MZ1", payload)


@pytest.mark.parametrize(
    "text",
    [
        '{"event":"dtmf","streamSid":"MZ1","dtmf":{"digit":"\\u0000"}}',
        '{"event":"dtmf","streamSid":"MZ1","dtmf":{"digit":"12"}}',
        '{"event":"media","streamSid":"MZ\\u0000","media":{"payload":""}}',
        '{"event":"mark","streamSid":"MZ\\ud800","mark":{"name":"a"}}',
    ],
)
def test_what_a_call_would_log_is_storable_or_a_bad_field(text: str) -> None:
    """Issue 11: a DTMF digit or stream SID holding U+0000 became an event PostgreSQL
    refused, and every event of the call after it was stuck behind it."""
    with pytest.raises(wire.MediaStreamError) as caught:
        wire.parse_inbound(text)
    assert caught.value.reason in ("bad_field", "invalid_json")


def test_an_error_detail_quotes_the_peers_text_escaped_and_bounded() -> None:
    with pytest.raises(wire.MediaStreamError) as caught:
        wire.parse_inbound('{"event":"stop\\u0000' + "x" * 1000 + '"}')
    assert caught.value.reason == "unknown_event"
    assert "\x00" not in caught.value.detail and "stop\\x00" in caught.value.detail
    assert len(caught.value.detail) <= 200
