"""One stream of audio chunks -> another format, chunk by chunk: the conversion at an edge.

One :class:`ToFormat` per stream and direction (synthesized speech -> the
caller's format, caller audio -> a provider's input format, a provider's
output -> the caller's format): chunks pass through untouched when they
already are in the target format; otherwise they are decoded to PCM16 (G.711
mu-law via :func:`~switchboard.codecs.ulaw_decode`), resampled with a
streaming :class:`~switchboard.codecs.Resampler` (its state carries across
chunks, so chunk edges make no clicks) and encoded for the target
(:func:`~switchboard.codecs.ulaw_encode` for a phone call). Pure code.
"""

from __future__ import annotations

import numpy as np

from switchboard.codecs import Resampler, pcm16_from_bytes, pcm16_to_bytes, ulaw_decode, ulaw_encode

from .context import AudioFormat
from .messages import AudioChunk

__all__ = ["ToFormat"]


class ToFormat:
    """Convert one stream of chunks (one format and rate throughout) to ``fmt``.

    Raises ``ValueError`` when a chunk's format differs from the first one's,
    or its rate is not one the resampler supports.
    """

    def __init__(self, fmt: AudioFormat) -> None:
        self.fmt = fmt
        self._source: tuple[str, int] | None = None
        self._resampler: Resampler | None = None

    def convert(self, chunk: AudioChunk) -> AudioChunk | None:
        """``chunk`` in the target format (None when it yields no samples yet)."""
        source = (chunk.encoding, chunk.sample_rate)
        if self._source is None:
            self._source = source
            if chunk.sample_rate != self.fmt.sample_rate:
                self._resampler = Resampler(chunk.sample_rate, self.fmt.sample_rate)
        elif source != self._source:
            raise ValueError(f"audio format changed within a segment: {self._source} -> {source}")
        if self._resampler is None and chunk.encoding == self.fmt.encoding:
            return chunk
        pcm = ulaw_decode(chunk.data) if chunk.encoding == "pcmu" else pcm16_from_bytes(chunk.data)
        if self._resampler is not None:
            pcm = self._resampler.process(pcm)
        return self._encode(pcm)

    def flush(self) -> AudioChunk | None:
        """The resampler's last samples, at the end of the stream (None if nothing).

        The resampler starts afresh: the converter can take the next stream
        of the same source format.
        """
        if self._resampler is None:
            return None
        return self._encode(self._resampler.flush())

    def _encode(self, pcm: np.ndarray) -> AudioChunk | None:
        if not len(pcm):
            return None
        data = ulaw_encode(pcm) if self.fmt.encoding == "pcmu" else pcm16_to_bytes(pcm)
        return AudioChunk(data, self.fmt.encoding, self.fmt.sample_rate)
