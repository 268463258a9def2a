"""The timeline as one self-contained page: both tracks as waveforms, events above, playback.

:func:`render_page` makes the HTML document (inline CSS and JavaScript from
``orchestrator/static/timeline.{css,js}``, no network, no library): the caller and
agent tracks as waveforms on one time axis (``<canvas data-track="caller|agent">``),
the marks above them (``.marker[data-kind=...]``: failover, provider failure,
barge-in, tool calls, dead air...), the turns as blocks (their text on hover), dead
air shaded, zoom (wheel, buttons) and scroll, and playback of any span: drag across
the waveforms, or click a turn, a mark or a row, and the page plays that span of the
WAV at ``audio_url`` (stereo, left caller, right agent) by setting the audio
element's ``currentTime``. ``window.timelineReady`` is true once it has drawn.

The page's data is JSON in a ``<script type="application/json">`` (``<``, ``>`` and
``&`` escaped, so a transcript can never close the tag); the page builds its DOM with
``textContent`` only. :data:`PAGE_CSP` allows exactly its own inline script and style
(by SHA-256) and media from the page's origin or the audio URL's.

:func:`waveform_peaks` computes the waveforms from a tape's records;
:func:`write_timeline_html` is ``switchboard replay --html OUT.html`` in one call.
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib.resources
import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import numpy as np

from switchboard.codecs.recording_format import Kind, Record
from switchboard.codecs.wav import WavSource, track_layout

from .levels import Levels, audio_format, levels_of_records
from .timeline import Timeline, build_timeline, timeline_json

__all__ = [
    "MAX_PEAK_BINS",
    "page_csp",
    "peaks_of",
    "render_page",
    "waveform_peaks",
    "write_timeline_html",
]

MAX_PEAK_BINS: Final = 30_000
"""The most waveform bins a page carries per track (a longer call gets wider bins)."""


def waveform_peaks(
    records: Iterable[Record], caller_format: Any, *, peak_ms: float = 20.0
) -> dict[str, list[float]]:
    """Per-track peak levels of a tape: ``{"caller": [...], "agent": [...]}``, one float
    0..1 (of full scale) per ``peak_ms`` bin from the call's start, the tracks laid out
    as heard (:func:`~switchboard.codecs.wav.track_layout`: a barge-in's clear cuts the
    agent track). ``caller_format``: an ``AudioFormat`` or ``{"encoding", "sample_rate"}``.

    Raises:
        ValueError: a bad format, ``peak_ms`` not positive, or audio that cannot be laid out.
    """
    if not peak_ms > 0:
        raise ValueError(f"peak_ms must be positive, got {peak_ms}")
    return peaks_of(levels_of_records(records, caller_format, bin_ms=peak_ms))


def peaks_of(levels: Levels, *, max_bins: int = MAX_PEAK_BINS) -> dict[str, list[float]]:
    """The peaks of ``levels``, bins merged (max) so that a track has at most ``max_bins``;
    the bin width is then ``levels.bin_ms * peak_factor(levels.bins, max_bins)``."""
    factor = peak_factor(levels.bins, max_bins)
    out: dict[str, list[float]] = {}
    for name, peak in levels.peak.items():
        n = -(-len(peak) // factor)
        padded = np.zeros(n * factor)
        padded[: len(peak)] = peak
        merged = padded.reshape(n, factor).max(axis=1, initial=0.0)
        out[name] = [round(float(v), 3) for v in merged]
    return out


def peak_factor(bins: int, max_bins: int = MAX_PEAK_BINS) -> int:
    """How many bins :func:`peaks_of` merges into one."""
    return max(1, -(-bins // max_bins))


def render_page(
    timeline: Timeline,
    *,
    peaks: Mapping[str, Sequence[float]],
    peak_ms: float,
    audio_url: str | None,
    title: str,
    audio_note: str | None = None,
) -> str:
    """The page (see the module docstring) as one HTML document.

    Args:
        peaks: per track (``caller``, ``agent``) one level 0..1 per ``peak_ms`` ms bin
            from the call's start; empty or missing: the track is drawn from the speech
            spans of the events.
        audio_url: the WAV of both tracks (absolute, or relative to the page); None: the
            call was not recorded, and the page says so.
        title: the page's title (plain text).
        audio_note: why there is no audio (shown instead of the default "not recorded").
    """
    data = {
        "timeline": timeline_json(timeline),
        "peaks": {
            name: [round(float(v), 3) for v in peaks.get(name, ())] for name in ("caller", "agent")
        },
        "peak_ms": float(peak_ms),
        "audio_url": audio_url,
        "audio_note": audio_note,
    }
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    blob = blob.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    css, script = _asset("timeline.css"), _asset("timeline.js")
    return _TEMPLATE.format(
        title=html.escape(title),
        css=css,
        data=blob,
        script=script,
    )


def page_csp(audio_url: str | None = None) -> str:
    """The ``Content-Security-Policy`` for the page: nothing but its own inline script and
    style, and media from its origin (or ``audio_url``'s)."""
    media = "'self'"
    if audio_url:
        parts = urlsplit(audio_url)
        if parts.scheme in ("http", "https") and parts.netloc:
            media += f" {parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'none'; script-src '{_hash(_asset('timeline.js'))}'; "
        f"style-src '{_hash(_asset('timeline.css'))}'; media-src {media}; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def write_timeline_html(
    path: Path,
    events: Sequence[Mapping[str, Any]],
    records: Sequence[Record] | None,
    caller_format: Any,
    *,
    session_id: str | None = None,
    door: str | None = None,
    silence_ms: float = 3000.0,
) -> None:
    """``switchboard replay --html OUT.html``: the page at ``path`` and, when there is
    audio (``records``), ``OUT.wav`` beside it (both tracks, stereo, left caller; the
    page plays it by its name, so keep the two files together).

    Raises:
        ValueError: a bad ``caller_format`` or audio that cannot be laid out.
        OSError: a file cannot be written.
    """
    levels = None
    audio_url = None
    if records is not None:
        encoding, rate = audio_format(caller_format)
        levels = levels_of_records(records, caller_format)
        wav = WavSource(
            track_layout(records, Kind.CALLER_AUDIO, rate, encoding),
            track_layout(records, Kind.AGENT_AUDIO, rate, encoding),
        )
        wav_path = path.with_suffix(".wav")
        with wav_path.open("wb") as out:
            for piece in wav.iter_range(0, wav.size, 1 << 20):
                out.write(piece)
        audio_url = wav_path.name
    timeline = build_timeline(
        events, silence_ms=silence_ms, levels=levels, session_id=session_id, door=door
    )
    peaks = peaks_of(levels) if levels is not None else {}
    peak_ms = levels.bin_ms * peak_factor(levels.bins) if levels is not None else 20.0
    title = f"Call {session_id or ''} ({timeline.agent or 'agent'})".replace("  ", " ")
    page = render_page(timeline, peaks=peaks, peak_ms=peak_ms, audio_url=audio_url, title=title)
    path.write_text(page, encoding="utf-8")


@cache
def _asset(name: str) -> str:
    resource = importlib.resources.files("switchboard.orchestrator") / "static" / name
    return resource.read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


_TEMPLATE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<h1>{title}</h1>
<p id="summary"></p>
<p id="audio-note"></p>
<div id="controls">
<button id="zoom-in" type="button" title="zoom in">+</button>
<button id="zoom-out" type="button" title="zoom out">&minus;</button>
<button id="zoom-all" type="button">whole call</button>
<span id="view"></span>
<audio id="audio" controls preload="metadata"></audio>
</div>
<div id="stage">
<div id="marks" class="lane"></div>
<div id="turns" class="lane"></div>
<div id="tracks">
<div class="track"><span class="label">caller</span><canvas data-track="caller"></canvas></div>
<div class="track"><span class="label">agent</span><canvas data-track="agent"></canvas></div>
<div id="overlay"></div>
<div id="selection" hidden></div>
</div>
<div id="axis"></div>
<div id="playhead" hidden></div>
</div>
<input id="scroll" type="range" min="0" max="0" value="0" step="any" aria-label="scroll">
<ol id="rows"></ol>
<script type="application/json" id="timeline-data">{data}</script>
<script>{script}</script>
</body>
</html>
"""
