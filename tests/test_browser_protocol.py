"""The browser protocol codec: round trips, and a clear error for any bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switchboard.codecs import browser_protocol as wire

text = st.text(max_size=40)
ident = st.text(min_size=1, max_size=20)
pcm = st.binary(max_size=400).map(lambda b: b[: len(b) // 2 * 2])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
outbound = st.one_of(
    st.builds(wire.SessionInfo, ident, st.sampled_from(wire.SAMPLE_RATES), text),
    st.builds(wire.AudioOut, pcm, ident),
    st.builds(wire.AgentStart, ident, st.booleans()),
    st.builds(wire.AgentEnd, ident, st.booleans()),
    st.builds(wire.Transcript, st.sampled_from(["caller", "agent"]), text, st.booleans()),
    st.builds(wire.ToolStart, ident, ident, st.dictionaries(text, json_values, max_size=3)),
    st.builds(wire.ToolEnd, ident, ident, st.booleans(), text),
    st.builds(wire.AudioInterrupted, st.none() | ident, st.floats(0, 1e6, allow_nan=False)),
    st.builds(wire.AudioEnd, ident),
    st.builds(
        wire.Timeline,
        ident,
        st.floats(0, 1e6, allow_nan=False),
        st.dictionaries(text, json_values, max_size=3),
    ),
    st.builds(wire.Error, ident, text),
)


@given(outbound)
def test_every_server_message_round_trips(message: wire.Outbound) -> None:
    assert wire.parse_outbound(wire.encode_outbound(message)) == message


@given(
    st.one_of(
        st.builds(wire.AudioIn, pcm),
        st.builds(wire.TextIn, text.filter(lambda t: t.strip() and "\x00" not in t)),
    )
)
def test_every_client_message_round_trips(message: wire.Inbound) -> None:
    assert wire.parse_inbound(wire.encode_inbound(message)) == message


@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), json_values.map(json.dumps)))
def test_any_input_is_a_message_or_a_clear_error(data: str | bytes) -> None:
    for parse in (wire.parse_inbound, wire.parse_outbound):
        try:
            parse(data)
        except wire.BrowserProtocolError as exc:
            assert exc.reason in {
                "invalid_json",
                "not_an_object",
                "unknown_event",
                "missing_field",
                "bad_field",
                "bad_base64",
                "odd_length",
                "too_large",
            }


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("{not json", "invalid_json"),
        ("[1]", "not_an_object"),
        ('{"payload": "AAAA"}', "missing_field"),
        ('{"event": "dance"}', "unknown_event"),
        ('{"event": "audio"}', "missing_field"),
        ('{"event": "audio", "payload": 5}', "bad_field"),
        ('{"event": "audio", "payload": "%%%"}', "bad_base64"),
        ('{"event": "audio", "payload": "AAAA"}', "odd_length"),
        ('{"event": "audio", "payload": "' + "A" * 300_000 + '"}', "too_large"),
        ('{"event": "text", "text": "   "}', "bad_field"),
        ('{"event": "text", "text": ' + "[" * 100_000 + "]" * 100_000 + "}", "invalid_json"),
    ],
)
def test_bad_client_messages_name_the_problem(message: str, reason: str) -> None:
    with pytest.raises(wire.BrowserProtocolError) as caught:
        wire.parse_inbound(message)
    assert caught.value.reason == reason


def test_sample_rates() -> None:
    assert wire.parse_sample_rate(None) == 24000
    assert [wire.parse_sample_rate(str(r)) for r in wire.SAMPLE_RATES] == [
        16000,
        24000,
        44100,
        48000,
    ]
    for bad in ("8000", "fast", "-1"):
        with pytest.raises(wire.BrowserProtocolError, match="sample_rate"):
            wire.parse_sample_rate(bad)
