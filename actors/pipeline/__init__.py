"""The cascaded pipeline shared by the ``local`` and ``cascaded`` providers.

- :class:`Pipeline`: the provider actor (turn taking, sentence-by-sentence
  speech, audio conversion, tool calls, history, barge-in, greeting).
- :mod:`.stages`: the slots it is built from (:class:`Listener`,
  :class:`Thinker`, :class:`Voice`) and :class:`StageFailed`.
- :class:`SentenceSplitter`, :func:`heard_text`: the pure text parts.
"""

from .pipeline import TOOL_TIMEOUT_S, Pipeline
from .sentences import SentenceSplitter, heard_text
from .stages import CallTool, Heard, Listener, Play, Say, StageFailed, Thinker, ToolCall, Voice

__all__ = [
    "TOOL_TIMEOUT_S",
    "CallTool",
    "Heard",
    "Listener",
    "Pipeline",
    "Play",
    "Say",
    "SentenceSplitter",
    "StageFailed",
    "Thinker",
    "ToolCall",
    "Voice",
    "heard_text",
]
