"""Opening a stored recording for playback: fetch the sealed object, decrypt, render a WAV.

:class:`RecordingAccess` is what the playback routes need from the process: the
recording store and an opener that turns a row and its sealed object into a
:class:`WavSource` for one track (the default opener, :func:`keyring_opener`,
unwraps the data key with the server keyring and renders with
:mod:`switchboard.codecs.wav`). Opened sources are kept in a small cache by
``(recording_id, track)`` so the Range requests of one player (a seek is a new
request) decrypt the object once; every request checks the row first, so a
deleted recording is never served from the cache.

Errors: :class:`PlaybackUnavailable` (``status`` and a message for the client)
for a recording the server cannot play; the store's own errors
(:class:`~.recording_store.RecordingMissing`, :class:`~.recording_store.RecordingStoreError`)
pass through.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol, final
from uuid import UUID

from .errors import SwitchboardError
from .recording_rows import RecordingRow
from .recording_store import RecordingStore

__all__ = [
    "CACHED_SOURCES",
    "Opener",
    "PlaybackUnavailable",
    "RecordingAccess",
    "WavSource",
]

CACHED_SOURCES: Final = 4
"""Opened recordings kept per process (a player's Range requests reuse one)."""


class WavSource(Protocol):
    """A WAV file rendered on demand: ``size`` bytes in all, ``read(start, end)`` gives
    bytes ``start`` to ``end`` (exclusive), header included (``codecs/wav.py``)."""

    @property
    def size(self) -> int: ...

    def read(self, start: int, end: int) -> bytes: ...


class PlaybackUnavailable(SwitchboardError):  # noqa: N818 - what the client is told
    """The server cannot play this recording; ``status`` and ``message`` are the answer
    (422: encrypted for the tenant's own key, or undecryptable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Opener = Callable[[RecordingRow, bytes, str], WavSource]
"""``(row, sealed object, track) -> WavSource``; raises :class:`PlaybackUnavailable`."""


@final
@dataclass
class RecordingAccess:
    """The store recordings are read from and how one is opened (see the module docstring)."""

    store: RecordingStore
    opener: Opener
    _cache: OrderedDict[tuple[UUID, str], WavSource] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, row: RecordingRow, track: str) -> WavSource:
        """The WAV of ``track`` of the recording ``row`` (blocking: run it in a thread).

        Raises:
            PlaybackUnavailable: the server cannot decrypt it (RSA mode, a key it
                does not hold, a damaged object).
            RecordingMissing: the store has no object at ``row.object_key``.
            RecordingStoreError: the store failed.
        """
        if row.key_kind != "keyring":
            raise PlaybackUnavailable(422, RSA_MESSAGE)
        key = (row.recording_id, track)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        source = self.opener(row, self.store.get(row.object_key), track)
        with self._lock:
            self._cache[key] = source
            while len(self._cache) > CACHED_SOURCES:
                self._cache.popitem(last=False)
        return source

    def forget(self, recording_id: UUID) -> None:
        """Drop the cached sources of a recording (it was deleted)."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == recording_id]:
                del self._cache[key]


RSA_MESSAGE: Final = (
    "this recording is encrypted for the tenant's RSA public key: the server cannot play it;"
    " decrypt it with the private key (switchboard recording decrypt --key private.pem)"
)
