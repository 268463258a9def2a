"""What a ``/v1/realtime`` client's session is: its audio format and the settings in effect.

The endpoint's rules (the transport carries them out, :mod:`.realtime_transport`):
the audio format is fixed by the client's first event (:func:`call_format`),
and the agent's configuration, not the client's, is what ``session.created``
and ``session.updated`` report (:func:`session_in_effect`). Pure code; event
shapes from :mod:`switchboard.codecs.openai_realtime`.
"""

from __future__ import annotations

from typing import Final

from switchboard.codecs import openai_realtime as wire
from switchboard.orchestrator.agents import AgentSpec

from .context import AudioFormat

__all__ = [
    "SUPPORTED_FORMATS",
    "TRANSCRIPTION_MODEL",
    "call_format",
    "caller_format",
    "format_name",
    "requested_format",
    "session_in_effect",
    "wire_format",
]

SUPPORTED_FORMATS: Final = (wire.PCM16_24K, wire.PCMU_8K)
TRANSCRIPTION_MODEL: Final = "switchboard"
"""Named in ``session.updated``: the runtime transcribes with whichever provider is live."""


def caller_format(fmt: wire.WireAudioFormat) -> AudioFormat:
    """The call's :class:`AudioFormat` for a supported wire format (``pcmu`` 8 kHz, PCM16 24 kHz).

    Raises:
        ValueError: A-law or another format the runtime does not carry.
    """
    if fmt not in SUPPORTED_FORMATS:
        raise ValueError(f"unsupported audio format {fmt}")
    return AudioFormat("pcmu" if fmt.encoding == "pcmu" else "pcm16", fmt.sample_rate)


def wire_format(fmt: AudioFormat) -> wire.WireAudioFormat:
    for candidate in SUPPORTED_FORMATS:
        if (candidate.encoding, candidate.sample_rate) == (fmt.encoding, fmt.sample_rate):
            return candidate
    raise ValueError(f"a realtime client cannot carry {fmt}")


def requested_format(update: wire.SessionUpdate) -> wire.WireAudioFormat | None:
    return update.session.input_format or update.session.output_format


def call_format(first_event: str | bytes | None) -> wire.WireAudioFormat:
    """The call's audio format, fixed by the client's first event (the rule of this endpoint).

    A ``session.update`` first that names a supported format (``audio.input.format``,
    else ``audio.output.format``; beta ``input_audio_format``: ``audio/pcmu`` /
    ``g711_ulaw`` or ``audio/pcm`` / ``pcm16``) sets it; anything else (no
    event, another event, a malformed one, A-law) leaves OpenAI's default,
    PCM16 at 24 kHz. It cannot change once the call runs.
    """
    if first_event is None:
        return wire.PCM16_24K
    try:
        event = wire.parse_client_event(first_event)
    except wire.RealtimeEventError:
        return wire.PCM16_24K
    if isinstance(event, wire.SessionUpdate):
        requested = requested_format(event)
        if requested in SUPPORTED_FORMATS:
            assert requested is not None
            return requested
    return wire.PCM16_24K


def session_in_effect(
    agent: AgentSpec, fmt: wire.WireAudioFormat, *, session_id: str, model: str
) -> wire.SessionConfig:
    """The session a client is told about (``session.created`` / ``session.updated``).

    The agent's configuration, not the client's: instructions, voice and its
    own function tools (the runtime's builtin tools are run by the runtime and
    not listed); audio ``fmt`` both ways; turn detection by the runtime's VAD.
    """
    tools = tuple(
        wire.FunctionTool(name=t.name, description=t.description, parameters=t.parameters_json())
        for t in agent.tools
    )
    return wire.SessionConfig(
        id=session_id,
        model=model,
        instructions=agent.instructions,
        voice=agent.voice,
        input_format=fmt,
        output_format=fmt,
        turn_detection=wire.TurnDetection(
            type="server_vad", create_response=True, interrupt_response=True
        ),
        transcription_model=TRANSCRIPTION_MODEL,
        tools=tools,
        tool_choice="auto",
        output_modalities=("audio",),
    )


def format_name(fmt: wire.WireAudioFormat) -> str:
    """The OpenAI name of ``fmt`` (``audio/pcmu``, ``audio/pcm``), for messages."""
    return {"pcmu": "audio/pcmu", "pcma": "audio/pcma"}.get(fmt.encoding, "audio/pcm")
