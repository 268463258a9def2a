"""The server's opener for playback: unwrap the data key with the server keyring,
verify and decrypt the sealed object (:func:`~switchboard.codecs.recording_format.read_records`),
and lay its tracks out as a WAV (:mod:`switchboard.codecs.wav`).

Everything the server cannot play is a :class:`~.recording_playback.PlaybackUnavailable`
with status 422 and the reason: a recording sealed for a tenant's RSA key, a
``kid`` the keyring no longer has, an altered wrapped key, a damaged or truncated
object (a ``truncated`` row plays what verifies), an object that belongs to
another call.
"""

from __future__ import annotations

from collections.abc import Sequence

from switchboard.codecs.recording_format import (
    Kind,
    Record,
    RecordingCorrupt,
    RecordingHeader,
    read_records,
)
from switchboard.codecs.wav import WavSource, track_layout

from .recording_keys import Keyring, RecordingKeyError
from .recording_playback import RSA_MESSAGE, Opener, PlaybackUnavailable
from .recording_rows import RecordingRow

__all__ = ["keyring_opener", "wav_of"]


def wav_of(header: RecordingHeader, records: Sequence[Record], track: str) -> WavSource:
    """The WAV of ``track`` (``caller``, ``agent`` or ``both``: stereo, left caller) of a
    recording's records, each track in its format from ``header``.

    Raises:
        ValueError: the track's audio cannot be laid out (see :func:`track_layout`,
            :class:`WavSource`).
    """
    caller = agent = None
    if track in ("caller", "both"):
        fmt = header.caller
        caller = track_layout(records, Kind.CALLER_AUDIO, fmt.sample_rate, fmt.encoding)
    if track in ("agent", "both"):
        fmt = header.agent
        agent = track_layout(records, Kind.AGENT_AUDIO, fmt.sample_rate, fmt.encoding)
    return WavSource(caller, agent)


def keyring_opener(keyring: Keyring) -> Opener:
    """An opener (see :class:`~.recording_playback.RecordingAccess`) that unwraps data
    keys with ``keyring``."""

    def open_wav(row: RecordingRow, blob: bytes, track: str) -> WavSource:
        if row.key_kind != "keyring":
            raise PlaybackUnavailable(422, RSA_MESSAGE)
        if row.wrapped_key is None:
            raise PlaybackUnavailable(422, "the recording's key is destroyed")
        try:
            data_key = keyring.unwrap(row.kid, row.wrapped_key)
        except RecordingKeyError as exc:
            raise PlaybackUnavailable(
                422, f"the server cannot decrypt this recording: {exc}"
            ) from None
        try:
            header, records = read_records(
                blob, data_key, allow_truncated=row.status == "truncated"
            )
        except RecordingCorrupt as exc:
            raise PlaybackUnavailable(422, f"the recording cannot be played: {exc}") from None
        if (header.tenant_id, header.session_id) != (str(row.tenant_id), str(row.session_id)):
            raise PlaybackUnavailable(422, "the stored recording belongs to another call")
        try:
            return wav_of(header, records, track)
        except ValueError as exc:
            raise PlaybackUnavailable(422, f"the {track} track cannot be played: {exc}") from None

    return open_wav
