"""Offline text-to-speech with eSpeak NG, through ctypes.

The shared library and its data come from the ``espeakng-loader`` wheel
(eSpeak NG 1.52). The C API used is the one in ``speak_lib.h``:
``espeak_Initialize`` in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode, a synth callback
that receives the samples, ``espeak_SetVoiceByName``, ``espeak_SetParameter``
and ``espeak_Synth``.

eSpeak keeps global state and is not thread-safe: every call goes through one
module-level lock. Nothing is loaded at import; the library is loaded,
initialised and unloaded around each synthesis (about 2 ms), because some of
its state (the pitch-flutter phase in ``wavegen.c``) survives every reset the
API offers and would make the output depend on what was spoken before. (So
the output is deterministic only while no other code in the process keeps
the same library loaded.) Synthesis is CPU-bound and synchronous, about 5 ms
for a 3 s sentence, reload included; call it from a worker thread
(``trio.to_thread.run_sync``) inside an actor.

- :func:`synthesize`: text -> PCM16 at :data:`SAMPLE_RATE` (22050 Hz).
- :func:`synthesize_at`: text -> PCM16 at any rate the project's
  :class:`~switchboard.codecs.Resampler` supports.
- :func:`synthesize_ulaw`: text -> G.711 mu-law bytes at 8000 Hz, the way a
  phone call carries audio.

Errors: ``ValueError`` for empty text, an unknown voice or a rate outside
80-450 words per minute; ``RuntimeError`` when the library cannot be loaded or
returns an error code (the message gives the function and the code).
"""

from __future__ import annotations

import _ctypes
import ctypes
import threading
from typing import Final

import espeakng_loader
import numpy as np

from switchboard.codecs import Pcm16, Resampler, ulaw_encode

__all__ = ["SAMPLE_RATE", "synthesize", "synthesize_at", "synthesize_ulaw"]

SAMPLE_RATE: Final = 22050
"""Sample rate (Hz) of eSpeak NG's output and of :func:`synthesize`."""

MIN_RATE_WPM: Final = 80
MAX_RATE_WPM: Final = 450

_KEEP_SILENCE_S: Final = 0.030
"""Leading/trailing silence kept around the speech, in seconds."""
_SILENCE_LEVEL: Final = 8
"""Samples with ``abs(x) <= _SILENCE_LEVEL`` count as silence when trimming."""

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS: Final = 2
# Without this option espeak_Initialize calls exit(1) when it fails (speak_lib.h).
_INITIALIZE_DONT_EXIT: Final = 0x8000
_ESPEAK_RATE: Final = 1
_ESPEAK_CHARS_UTF8: Final = 1
_POS_CHARACTER: Final = 1
_EE_OK: Final = 0
_EE_NOT_FOUND: Final = 2
_ERROR_NAMES: Final = {-1: "EE_INTERNAL_ERROR", 1: "EE_BUFFER_FULL", 2: "EE_NOT_FOUND"}

# int callback(short *wav, int numsamples, espeak_EVENT *events): 0 = go on.
_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

_lock = threading.Lock()


class _Library:
    """eSpeak NG loaded and initialised for one synthesis; use only while holding ``_lock``.

    eSpeak keeps synthesis state in static variables that no API call resets
    (the pitch-flutter phase ``Flutter_ix`` in ``wavegen.c``, for one), so the
    same text would come out a little different each time. Loading the library
    afresh for each synthesis and unloading it afterwards (about 2 ms) makes
    the output depend on the arguments alone.
    """

    def __init__(self) -> None:
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
        except OSError as exc:
            raise RuntimeError(f"cannot load the eSpeak NG library: {exc}") from exc
        self._lib = lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Terminate.argtypes = []
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,  # text
            ctypes.c_size_t,  # size in bytes, including the terminating NUL
            ctypes.c_uint,  # position
            ctypes.c_int,  # position type
            ctypes.c_uint,  # end position
            ctypes.c_uint,  # flags
            ctypes.POINTER(ctypes.c_uint),  # unique identifier (out), may be NULL
            ctypes.c_void_p,  # user data
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        self._chunks: list[Pcm16] = []
        # Kept referenced: the library holds only the raw function pointer.
        self._callback = _SynthCallback(self._collect)

    def _collect(self, wav: ctypes._Pointer[ctypes.c_short], n: int, _events: int | None) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.int16))
        return 0

    def synthesize(self, text: str, voice: str, rate_wpm: int) -> Pcm16:
        lib = self._lib
        data_path = espeakng_loader.get_data_path().encode()
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, _INITIALIZE_DONT_EXIT)
        if rate != SAMPLE_RATE:
            raise RuntimeError(
                f"espeak_Initialize returned {rate}, not the sample rate {SAMPLE_RATE} Hz "
                f"(data path {data_path.decode(errors='replace')!r})"
            )
        try:
            lib.espeak_SetSynthCallback(self._callback)
            code = lib.espeak_SetVoiceByName(voice.encode())
            if code == _EE_NOT_FOUND:
                raise ValueError(
                    f"unknown eSpeak NG voice {voice!r} (a voice file name under "
                    "espeak-ng-data/lang, such as 'en-us', 'en' or 'en-GB-x-rp')"
                )
            _check("espeak_SetVoiceByName", code)
            _check("espeak_SetParameter", lib.espeak_SetParameter(_ESPEAK_RATE, rate_wpm, 0))
            encoded = text.encode("utf-8") + b"\0"
            code = lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
            )
            _check("espeak_Synth", code)
            if not self._chunks:
                return np.zeros(0, dtype=np.int16)
            return np.concatenate(self._chunks)
        finally:
            self._chunks = []
            lib.espeak_Terminate()

    def unload(self) -> None:
        """Unload the library, so the next load starts from clean static state."""
        dlclose = getattr(_ctypes, "dlclose", None)
        if dlclose is not None:
            dlclose(self._lib._handle)


def _check(function: str, code: int) -> None:
    if code != _EE_OK:
        raise RuntimeError(f"{function} returned {_ERROR_NAMES.get(code, 'error')} ({code})")


def _trim(pcm: Pcm16, keep: int) -> Pcm16:
    """Cut silence beyond ``keep`` samples from both ends of ``pcm``."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > _SILENCE_LEVEL)
    if loud.size == 0:
        return pcm[:0].copy()
    start = max(0, int(loud[0]) - keep)
    end = min(pcm.shape[0], int(loud[-1]) + 1 + keep)
    return pcm[start:end].copy()


def _validate(text: str, voice: str, rate_wpm: int) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not text.strip():
        raise ValueError("text to synthesize is empty")
    if "\0" in text:
        raise ValueError("text to synthesize contains a NUL character")
    if not voice or "\0" in voice:
        raise ValueError(f"unknown eSpeak NG voice {voice!r}")
    if not MIN_RATE_WPM <= rate_wpm <= MAX_RATE_WPM:
        raise ValueError(
            f"rate_wpm must be within {MIN_RATE_WPM}-{MAX_RATE_WPM} words per minute, "
            f"got {rate_wpm}"
        )


def synthesize(text: str, *, voice: str = "en-us", rate_wpm: int = 165) -> Pcm16:
    """Speak ``text`` with eSpeak NG.

    The result is deterministic (the same arguments give the same samples) and
    is trimmed to at most 30 ms of silence before and after the speech, so a
    greeting is heard at once.

    Args:
        text: plain UTF-8 text (no SSML), not blank.
        voice: an eSpeak NG voice name, such as ``"en-us"`` or ``"en-gb"``.
        rate_wpm: speaking rate in words per minute, 80-450.

    Returns:
        int16 array, shape (n,), at :data:`SAMPLE_RATE` (22050 Hz).

    Raises:
        TypeError: ``text`` is not a str.
        ValueError: ``text`` is blank, the voice is unknown, or ``rate_wpm`` is
            out of range.
        RuntimeError: the library cannot be loaded or reports an error.
    """
    _validate(text, voice, rate_wpm)
    with _lock:
        library = _Library()
        try:
            pcm = library.synthesize(text, voice, rate_wpm)
        finally:
            library.unload()
    return _trim(pcm, keep=round(_KEEP_SILENCE_S * SAMPLE_RATE))


def synthesize_at(
    text: str, sample_rate: int, *, voice: str = "en-us", rate_wpm: int = 165
) -> Pcm16:
    """Speak ``text`` and resample it to ``sample_rate``.

    Args:
        text, voice, rate_wpm: as for :func:`synthesize`.
        sample_rate: output rate in Hz, one of
            :data:`switchboard.codecs.SUPPORTED_RATES`.

    Returns:
        int16 array, shape (n,), at ``sample_rate``.

    Raises:
        As :func:`synthesize`; also ``ValueError`` for an unsupported rate.
    """
    resampler = Resampler(SAMPLE_RATE, sample_rate)  # validates the rate first
    pcm = synthesize(text, voice=voice, rate_wpm=rate_wpm)
    return np.concatenate([resampler.process(pcm), resampler.flush()])


def synthesize_ulaw(text: str, *, voice: str = "en-us", rate_wpm: int = 165) -> bytes:
    """Speak ``text`` as G.711 mu-law at 8000 Hz, one byte per sample.

    This is what a phone call (Twilio Media Streams) carries.

    Raises:
        As :func:`synthesize`.
    """
    return ulaw_encode(synthesize_at(text, 8000, voice=voice, rate_wpm=rate_wpm))
