"""The default opener of :class:`~.recording_playback.RecordingAccess` (placeholder until
the recording format lands: the server cannot render a WAV yet)."""

from __future__ import annotations

from .config import Settings
from .recording_playback import Opener, PlaybackUnavailable, WavSource
from .recording_rows import RecordingRow


def keyring_opener(settings: Settings) -> Opener:
    """An opener that unwraps data keys with the server keyring (not yet available)."""

    def open_wav(row: RecordingRow, blob: bytes, track: str) -> WavSource:
        raise PlaybackUnavailable(501, "this server cannot render recordings yet")

    return open_wav
