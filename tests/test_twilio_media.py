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
    assert wire.parse_inbound(enc.dtmf("7")) == wire.Dtmf("MZ1", "7")
    assert wire.parse_inbound(enc.mark("m")) == wire.MarkPlayed("MZ1", "m")
    assert wire.parse_inbound(enc.stop()) == wire.Stop("MZ1", "CA1", "AC1")
    assert isinstance(wire.parse_inbound(enc.connected()), wire.Connected)


@pytest.mark.parametrize(
    "message",
    [
        wire.OutboundMedia("MZ1", b"\x01\x02"),
        wire.OutboundMark("MZ1", "response:r1"),
        wire.Clear("MZ1"),
    ],
)
def test_outbound_round_trip(message: wire.Outbound) -> None:
    assert wire.parse_outbound(wire.encode_outbound(message)) == message


def test_outbound_media_matches_twilios_shape() -> None:
    sent = json.loads(wire.encode_outbound(wire.OutboundMedia("MZ1", b"\xff\x7f")))
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
    ],
)
def test_malformed_frames_are_named(text: str | bytes, reason: str) -> None:
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
        assert exc.reason in {
            "invalid_json",
            "not_an_object",
            "unknown_event",
            "missing_field",
            "bad_field",
            "bad_base64",
        }
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
    assert out == wire.OutboundMedia("MZ1", payload)
