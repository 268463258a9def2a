"""The ``cascaded`` provider: Deepgram live STT -> a chat-completions LLM -> TTS, streamed.

The shared :class:`~switchboard.actors.pipeline.Pipeline` with three network
stages, each in a module of its own:

- :class:`~.cascaded_stt.DeepgramListener`: caller audio as binary frames
  over a WebSocket in Deepgram's live protocol (``STT_URL``), phone audio as
  it comes (``encoding=mulaw&sample_rate=8000``); ``SpeechStarted`` is the
  barge-in signal, ``is_final`` results are joined until ``speech_final``
  or ``UtteranceEnd`` ends the utterance.
- :class:`~.cascaded_llm.ChatThinker`: any OpenAI-compatible
  ``POST {LLM_BASE_URL}/chat/completions`` with ``stream: true``, the
  agent's instructions and tools in OpenAI's function format; streamed
  ``tool_calls`` are run through the runtime and the model is asked again
  with their results.
- :class:`~.cascaded_tts.SpeechVoice`: OpenAI-compatible
  ``POST {TTS_BASE_URL}/audio/speech`` (PCM16, 24 kHz), or Deepgram's
  ``POST /v1/speak`` when the base URL is Deepgram's, read as it streams.

Options (agent ``providers: {cascaded: {...}}``): ``stt_model``,
``language``, ``llm_model`` (else ``LLM_MODEL``), ``tts_model`` (else
``TTS_MODEL``), ``tts_voice`` (else ``TTS_VOICE``).

Failures (:class:`~switchboard.actors.pipeline.StageFailed`, reported as
``ProviderFailed``): a 5xx answer or refused handshake -> ``http_5xx``; an
error event or another HTTP error -> ``error_event``; a connection lost or
a stream cut short -> ``disconnect``; no connection within the connect
timeout -> ``connect_timeout``; nothing read within the HTTP client's read
timeout -> ``stall``.
"""

from __future__ import annotations

from typing import Final

from switchboard.codecs import deepgram_live as dg

from ..context import AudioFormat
from ..pipeline import Pipeline
from . import ProviderSetup
from .cascaded_llm import ChatThinker, tool_definitions
from .cascaded_stt import DeepgramListener
from .cascaded_tts import SpeechVoice

__all__ = ["ChatThinker", "DeepgramListener", "SpeechVoice", "build", "tool_definitions"]

DEFAULT_INSTRUCTIONS: Final = "You are a helpful receptionist answering a phone call."
SPOKEN_STYLE: Final = (
    "You are speaking on a phone call: answer in short, plain sentences without "
    "lists, markdown or emoji."
)


def build(setup: ProviderSetup) -> Pipeline:
    """The ``cascaded`` provider for a call (see :mod:`switchboard.actors.providers`)."""
    ctx, endpoints = setup.ctx, setup.endpoints
    agent = ctx.agent

    def option(name: str) -> str:
        return agent.option("cascaded", name)

    fmt: AudioFormat = ctx.caller_format
    options = dg.ListenOptions(
        encoding="mulaw" if fmt.encoding == "pcmu" else "linear16",
        sample_rate=fmt.sample_rate,
        model=option("stt_model"),
        language=option("language"),
    )
    instructions = "\n\n".join([agent.instructions or DEFAULT_INSTRUCTIONS, SPOKEN_STYLE])
    return Pipeline(
        "cascaded",
        ctx,
        listener=DeepgramListener(
            setup.connect,
            dg.listen_url(endpoints.stt_url, options),
            endpoints.stt_api_key,
            tape=ctx.tape,
            source=f"{setup.source}/stt",
        ),
        thinker=ChatThinker(
            setup.http,
            endpoints.llm_base_url,
            endpoints.llm_api_key,
            option("llm_model") or endpoints.llm_model,
            instructions,
            tool_definitions(agent),
            tape=ctx.tape,
            source=f"{setup.source}/llm",
        ),
        voice=SpeechVoice(
            setup.http,
            endpoints.tts_base_url,
            endpoints.tts_api_key,
            option("tts_model") or endpoints.tts_model,
            option("tts_voice") or endpoints.tts_voice,
            tape=ctx.tape,
            source=f"{setup.source}/tts",
        ),
        conversation=setup.conversation,
        greet=setup.greet,
        respond_now=setup.respond_now,
    )
