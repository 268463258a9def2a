"""The cascaded provider's wire formats: Deepgram live messages and chat-completion streams.

What would go wrong for a caller if these broke: a transcript lost or cut,
an answer's words dropped or doubled, a tool call with the wrong arguments,
or a garbled frame from a provider crashing the call instead of being
reported.
"""

from __future__ import annotations

import itertools
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from switchboard.codecs import chat_completions as chat
from switchboard.codecs import deepgram_live as dg

# -- Deepgram live -------------------------------------------------------------------------


def test_listen_url_carries_the_phone_audio_format_and_turn_options() -> None:
    url = dg.listen_url(
        "wss://api.deepgram.com/v1/listen", dg.ListenOptions("mulaw", 8000, model="nova-3")
    )
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == "/v1/listen"
    assert query["encoding"] == "mulaw" and query["sample_rate"] == "8000"
    assert query["channels"] == "1" and query["model"] == "nova-3"
    assert query["interim_results"] == "true" and query["vad_events"] == "true"
    assert query["endpointing"] == "300" and query["utterance_end_ms"] == "1000"


def test_a_real_deepgram_results_message_parses() -> None:
    # Shape from Deepgram's live API reference (trimmed words).
    frame = json.dumps(
        {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": 1.98,
            "start": 5.99,
            "is_final": True,
            "speech_final": True,
            "channel": {
                "alternatives": [
                    {"transcript": "Another big problem", "confidence": 0.99, "words": []}
                ]
            },
            "metadata": {"request_id": "r", "model_info": {}, "model_uuid": "u"},
            "from_finalize": False,
        }
    )
    assert dg.parse_server_message(frame) == dg.Results(
        "Another big problem", 5.99, 1.98, True, True, 0.99
    )


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (dg.encode_utterance_end(2.5), dg.UtteranceEnd(2.5)),
        (dg.encode_speech_started(0.46), dg.SpeechStarted(0.46)),
        (dg.encode_metadata("req", 12.5), dg.Metadata("req", 12.5)),
        (dg.encode_error("boom", "NET-0001"), dg.DeepgramError("boom", "NET-0001")),
    ],
)
def test_each_server_message_round_trips(frame: str, message: dg.ServerMessage) -> None:
    assert dg.parse_server_message(frame) == message


def test_encoded_results_keep_the_transcript_and_flags() -> None:
    frame = dg.encode_results("what are your hours", 1.0, 1.2, is_final=False, speech_final=False)
    parsed = dg.parse_server_message(frame)
    assert parsed == dg.Results("what are your hours", 1.0, 1.2, False, False, 0.98)


@pytest.mark.parametrize(
    "frame",
    ["{", "[]", '{"type": "Dance"}', '{"type": "Results"}', '{"type": "UtteranceEnd"}'],
)
def test_malformed_frames_are_clear_errors(frame: str) -> None:
    with pytest.raises(dg.DeepgramMessageError):
        dg.parse_server_message(frame)


@given(st.one_of(st.text(), st.binary()))
def test_any_frame_gives_a_message_or_a_clear_error(frame: str | bytes) -> None:
    try:
        dg.parse_server_message(frame)
    except dg.DeepgramMessageError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(
    st.sampled_from(["Results", "UtteranceEnd", "SpeechStarted", "Metadata", "Error"]),
    st.dictionaries(
        st.sampled_from(["channel", "start", "duration", "is_final", "last_word_end", "timestamp"]),
        json_values,
    ),
)
def test_any_json_of_a_known_type_gives_a_message_or_a_clear_error(
    kind: str, fields: dict[str, object]
) -> None:
    try:
        dg.parse_server_message(json.dumps({"type": kind, **fields}))
    except dg.DeepgramMessageError:
        pass


# -- Server-Sent Events and chat completion chunks ---------------------------------------


STREAM = (
    b": keep-alive comment\n\n"
    b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
    b"event: message\r\ndata: [DONE]\r\n\r\n"
)


def test_sse_events_are_found_whatever_the_line_endings() -> None:
    events = chat.SseDecoder().feed(STREAM)
    assert [e.data for e in events] == [
        '{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}',
        "[DONE]",
    ]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=8))
def test_any_chunking_of_a_stream_gives_the_same_events(cuts: list[int]) -> None:
    decoder = chat.SseDecoder()
    events: list[chat.SseEvent] = []
    edges = [0, *sorted(cuts), len(STREAM)]
    for a, b in itertools.pairwise(edges):
        events += decoder.feed(STREAM[a:b])
    events += decoder.flush()
    assert events == chat.SseDecoder().feed(STREAM)


@given(st.binary(max_size=200))
def test_any_bytes_decode_to_events_without_error(body: bytes) -> None:
    decoder = chat.SseDecoder()
    for event in [*decoder.feed(body), *decoder.flush()]:
        assert isinstance(event.data, str)


@given(st.text(max_size=200))
def test_any_event_data_gives_a_chunk_or_a_clear_error(data: str) -> None:
    try:
        parsed = chat.parse_stream_data(data)
    except chat.ChatStreamError:
        return
    assert isinstance(parsed, chat.ChatChunk | chat.StreamDone | chat.StreamError)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": json_values,
            "choices": st.lists(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "delta": st.fixed_dictionaries(
                            {},
                            optional={
                                "content": json_values,
                                "tool_calls": st.lists(
                                    st.dictionaries(
                                        st.sampled_from(["index", "id", "function"]), json_values
                                    ),
                                    max_size=2,
                                ),
                            },
                        ),
                        "finish_reason": json_values,
                    },
                ),
                max_size=2,
            ),
            "error": json_values,
        },
    )
)
def test_any_chunk_shaped_json_gives_a_chunk_or_a_clear_error(obj: dict[str, object]) -> None:
    try:
        chat.parse_stream_data(json.dumps(obj))
    except chat.ChatStreamError:
        pass


def test_streamed_tool_call_deltas_join_into_one_call_with_parsed_arguments() -> None:
    frames = [
        chat.encode_chunk("c", "m", role=True, content=""),
        chat.encode_chunk("c", "m", tool_call=chat.ToolCallDelta(0, "call_1", "lookup_hours", "")),
        chat.encode_chunk("c", "m", tool_call=chat.ToolCallDelta(0, arguments='{"day": ')),
        chat.encode_chunk("c", "m", tool_call=chat.ToolCallDelta(0, arguments='"monday"}')),
        chat.encode_chunk("c", "m", finish_reason="tool_calls"),
    ]
    for frame in frames:  # what the openai SDK would accept
        ChatCompletionChunk.model_validate_json(frame)
    assembler = chat.ToolCallAssembler()
    finish = None
    for frame in frames:
        parsed = chat.parse_stream_data(frame)
        assert isinstance(parsed, chat.ChatChunk)
        assembler.feed(parsed.tool_calls)
        finish = parsed.finish_reason or finish
    (call,) = assembler.calls()
    assert (call.id, call.name, dict(call.arguments)) == (
        "call_1",
        "lookup_hours",
        {"day": "monday"},
    )
    assert finish == "tool_calls"


def test_an_error_event_and_done_are_told_apart_from_chunks() -> None:
    error = chat.parse_stream_data('{"error": {"message": "overloaded", "type": "server_error"}}')
    assert error == chat.StreamError("overloaded", "server_error", "")
    assert chat.parse_stream_data("[DONE]") == chat.StreamDone()


def test_tool_arguments_that_are_not_a_json_object_are_a_clear_error() -> None:
    assembler = chat.ToolCallAssembler()
    assembler.feed([chat.ToolCallDelta(0, "call_1", "lookup_hours", "[1, 2")])
    with pytest.raises(chat.ChatStreamError, match="not JSON"):
        assembler.calls()
