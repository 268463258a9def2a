"""The Gemini Live wire codec: round trips, google-genai's types agree, any input is safe."""

from __future__ import annotations

import json

import pytest
from google.genai import types
from hypothesis import given
from hypothesis import strategies as st

from switchboard.codecs import gemini_live as wire

PCM = b"\x01\x00\xff\x7f" * 10

CLIENT = [
    wire.Setup(
        model="models/gemini-live-2.5-flash-preview",
        system_instruction="Be brief.",
        voice="Puck",
        language="en-US",
        tools=(wire.FunctionDeclaration("lookup_hours", "Opening hours.", {"type": "object"}),),
        resume_handle="handle-1",
    ),
    wire.Setup(model="m", input_transcription=False, output_transcription=False),
    wire.RealtimeAudio(PCM),
    wire.AudioStreamEnd(),
    wire.ClientContent(
        (wire.ContentTurn("user", "hi"), wire.ContentTurn("model", "hello")), turn_complete=True
    ),
    wire.ToolResponse((wire.FunctionResponse("fc-1", "lookup_hours", {"output": "9 to 5"}),)),
]

SERVER = [
    (wire.SetupComplete(),),
    (wire.ServerContent(parts=(wire.InlineAudio(PCM), "a thought")),),
    (wire.ServerContent(output_transcription="Hello", input_transcription="hi"),),
    (wire.ServerContent(interrupted=True),),
    (wire.ServerContent(turn_complete=True), wire.UsageMetadata(1, 2, 3)),
    (wire.ServerContent(generation_complete=True),),
    (wire.ToolCall((wire.FunctionCall("fc-1", "lookup_hours", {"day": "monday"}),)),),
    (wire.ToolCallCancellation(("fc-1",)),),
    (wire.GoAway(9500.0),),
    (wire.SessionResumptionUpdate("handle-2", resumable=True),),
]


@pytest.mark.parametrize("message", CLIENT, ids=lambda m: type(m).__name__)
def test_client_messages_round_trip_and_are_valid_live_client_messages(
    message: wire.ClientMessage,
) -> None:
    text = wire.encode_client(message)
    assert wire.parse_client(text) == message
    assert wire.parse_client(text.encode()) == message
    parsed = types.LiveClientMessage.model_validate_json(text)
    assert len(parsed.model_dump(exclude_none=True)) == 1  # exactly one field, as the API wants


@pytest.mark.parametrize("messages", SERVER, ids=lambda m: type(m[0]).__name__)
def test_server_messages_round_trip_and_are_valid_live_server_messages(
    messages: tuple[wire.ServerMessage, ...],
) -> None:
    frame = wire.encode_server(*messages)
    assert isinstance(frame, bytes)
    assert wire.parse_server(frame) == messages
    assert wire.parse_server(frame.decode()) == messages
    types.LiveServerMessage.model_validate_json(frame)


def test_setup_carries_what_the_sdk_would_send() -> None:
    setup = json.loads(wire.encode_client(CLIENT[0]))["setup"]
    sdk = types.LiveClientSetup.model_validate(setup)
    assert sdk.generation_config is not None and sdk.generation_config.speech_config is not None
    voice = sdk.generation_config.speech_config.voice_config
    assert voice is not None and voice.prebuilt_voice_config is not None
    assert voice.prebuilt_voice_config.voice_name == "Puck"
    assert sdk.generation_config.response_modalities == [types.Modality.AUDIO]
    assert sdk.session_resumption is not None and sdk.session_resumption.handle == "handle-1"
    assert sdk.input_audio_transcription is not None
    assert sdk.tools and sdk.tools[0].function_declarations
    assert sdk.tools[0].function_declarations[0].name == "lookup_hours"


def test_realtime_audio_says_its_rate_and_decodes_to_the_same_bytes() -> None:
    sdk = types.LiveClientMessage.model_validate_json(wire.encode_client(wire.RealtimeAudio(PCM)))
    assert sdk.realtime_input is not None and sdk.realtime_input.audio is not None
    assert sdk.realtime_input.audio.mime_type == "audio/pcm;rate=16000"
    assert sdk.realtime_input.audio.data == PCM


def test_a_real_server_frame_with_unknown_fields_parses() -> None:
    frame = json.dumps(
        {
            "serverContent": {
                "modelTurn": {
                    "parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": "AAAA"}}]
                },
                "someNewField": {"x": 1},
            },
            "usageMetadata": {"totalTokenCount": 7, "responseTokensDetails": []},
            "somethingElse": True,
        }
    )
    with pytest.raises(wire.GeminiLiveError, match="even number"):
        wire.parse_server(frame)  # 3 bytes of PCM16 is malformed
    content, usage = wire.parse_server(frame.replace("AAAA", "AAA="))
    assert isinstance(content, wire.ServerContent) and content.audio == bytes(2)
    assert usage == wire.UsageMetadata(total_token_count=7)
    assert wire.parse_server('{"voiceActivity": {"type": "ACTIVITY_START"}}') == ()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        ('{"serverContent": []}', "bad_field"),
        ('{"goAway": {"timeLeft": "soon"}}', "bad_field"),
        ('{"toolCall": {"functionCalls": [{"name": "x"}]}}', "bad_field"),
        (
            '{"serverContent": {"modelTurn": {"parts": '
            '[{"inlineData": {"mimeType": "audio/pcm", "data": "!!"}}]}}}',
            "bad_base64",
        ),
    ],
)
def test_malformed_server_frames_raise_a_clear_error(raw: str, reason: str) -> None:
    with pytest.raises(wire.GeminiLiveError) as info:
        wire.parse_server(raw)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_a_client_message_with_no_known_field_is_refused() -> None:
    with pytest.raises(wire.GeminiLiveError, match="unknown_message"):
        wire.parse_client('{"hello": 1}')


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "serverContent",
                    "modelTurn",
                    "parts",
                    "inlineData",
                    "data",
                    "mimeType",
                    "text",
                    "turnComplete",
                    "interrupted",
                    "toolCall",
                    "functionCalls",
                    "id",
                    "name",
                    "args",
                    "goAway",
                    "timeLeft",
                    "sessionResumptionUpdate",
                    "newHandle",
                    "resumable",
                    "usageMetadata",
                    "setupComplete",
                    "setup",
                    "realtimeInput",
                    "audio",
                    "clientContent",
                    "turns",
                    "role",
                    "toolResponse",
                    "functionResponses",
                    "response",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@given(st.one_of(JSON.map(json.dumps), st.binary(max_size=64), st.text(max_size=64)))
def test_any_input_gives_messages_or_a_clear_error(raw: str | bytes) -> None:
    for parse in (wire.parse_server, wire.parse_client):
        try:
            parse(raw)
        except wire.GeminiLiveError as exc:
            assert exc.reason in {
                "invalid_json",
                "not_an_object",
                "unknown_message",
                "bad_field",
                "bad_base64",
            }


@given(
    st.lists(st.binary(max_size=40).map(lambda b: b[: len(b) // 2 * 2]), max_size=4),
    st.text(max_size=20),
    st.booleans(),
)
def test_server_content_round_trips_for_any_audio_and_text(
    chunks: list[bytes], text: str, done: bool
) -> None:
    content = wire.ServerContent(
        parts=tuple(wire.InlineAudio(c) for c in chunks),
        output_transcription=text,
        turn_complete=done,
    )
    assert wire.parse_server(wire.encode_server(content)) == (content,)
