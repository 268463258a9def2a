"""Switchboard: a voice-call runtime for Twilio Media Streams and browser calls.

Subpackages: ``switchboard.codecs`` (audio formats, pure code),
``switchboard.actors`` (the per-call actors), ``switchboard.orchestrator``
(the server, the call nursery, storage, the command line).
"""

__version__ = "0.1.0"
