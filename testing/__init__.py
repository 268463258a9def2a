"""Fake providers that speak the real wire protocols, for testing agents and the runtime.

Like ``trio.testing`` and ``httpx.MockTransport``: use them in your own tests,
or run one from the command line (``python -m switchboard.testing --help``, :mod:`.__main__`)
and point the runtime at it (``OPENAI_REALTIME_URL=ws://127.0.0.1:PORT``).

- :mod:`.script`: what a fake says and which faults it injects.
- :mod:`.websocket`: serve a fake on loopback, or reach it in memory
  (:func:`memory_connector`) for tests on Trio's MockClock.
- :mod:`.speech`: the fakes' voice (eSpeak NG) and ears (VAD).
"""

from .script import Fault, Script, ToolStep, Turn
from .websocket import memory_connector, memory_router, serve

__all__ = ["Fault", "Script", "ToolStep", "Turn", "memory_connector", "memory_router", "serve"]
