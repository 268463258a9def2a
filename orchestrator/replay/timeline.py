"""A call's timeline from its event rows: who spoke when, what was said, and what went wrong.

:func:`build_timeline` reads event rows (``{"seq", "type", "t_ms", "payload"}``, see
:mod:`.api`) into a :class:`Timeline`: the turns, the marks (barge-in, tool calls,
provider failures, failovers, transfers, dead air...) and the dead-air spans.
:func:`render_text` prints it for a terminal, :func:`timeline_json` for a page or a
machine (:mod:`.timeline_model`, :mod:`.timeline_text`, :mod:`.timeline_marks` hold
the shapes, the text and the marks; this module gathers them). Pure: no I/O, no clock.

Speech spans (who was speaking when):

* from the events: the caller from ``speech.started`` to ``speech.stopped`` (a
  ``turn:user`` with no such pair: its audio length, ending at the event; a
  ``typed`` one is text shown at its instant, ``(typed) ...``, with no span); the agent
  from ``response.start`` to its ``playback.marked "response:<id>"`` (all of it
  heard), the ``barge_in`` that cut it, or, for an answer that never finished, the
  start of the silence a following ``failover.switch`` reports (``gap_ms``), else the
  ``provider.failed``, the next ``response.start`` or the call's end;
* from the audio, when ``levels`` or ``records`` are given: a 20 ms bin whose RMS passes
  :data:`~.levels.SPEECH_RMS` on a track is speech on it. **The audio wins**: with
  audio, dead air is where both tracks are quiet, whatever the events say.

With audio, a caller turn spans the caller's utterance on the tape that starts
nearest its event start (within 1.5 s). Response latency of an agent turn: from the caller's end of
speech as the runtime saw it (the ``speech.stopped`` before the ``turn:user``, else
the ``turn:user`` event; the tape's caller track is laid out as received, which a
client sending faster than real time stretches) to the
agent's first audio: the first agent audio on the tape at or after the response's
``response.start`` when audio is given (``latency_from: "audio"``), else the
``failover.switch`` that announced it (a new provider's first audio:
``"failover.switch"``), else the ``response.start`` itself (``"response.start"``);
an agent turn starts at that first audio. Only the first agent answer to a
caller turn gets one; an answer that never finished (a provider failed in it) leaves
the turn unanswered, so the next answer's latency counts the whole wait.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from switchboard.codecs.recording_format import Record

from .levels import Levels, levels_of_records
from .timeline_marks import MARK_KINDS, Mark, mark_of
from .timeline_model import Span, Timeline, Turn, timeline_json, totals
from .timeline_text import WIDTH, render_text

__all__ = [
    "MARK_KINDS",
    "WIDTH",
    "Mark",
    "Timeline",
    "Turn",
    "build_timeline",
    "render_text",
    "timeline_json",
    "totals",
]

_SNAP_MS: Final = 1500.0
"""A caller turn takes the tape's utterance starting this close to its ``speech.started``."""
_PAUSE_MS: Final = 600.0
"""Speech on the tape this close together is one utterance."""


def build_timeline(
    events: Sequence[Mapping[str, Any]],
    *,
    silence_ms: float = 3000.0,
    records: Sequence[Record] | None = None,
    levels: Levels | None = None,
    session_id: str | None = None,
    door: str | None = None,
) -> Timeline:
    """The timeline of a call from its event rows (in ``seq`` order).

    Args:
        silence_ms: dead air is a silence of both sides longer than this, in ms.
        records: the call's tape (optional): its audio decides who spoke when, laid out
            in ``session.start``'s ``caller_format``.
        levels: the audio levels already computed (from the recording's WAV); wins
            over ``records``.
        session_id, door: shown in the header (``door``: twilio, browser, realtime).

    Raises:
        ValueError: ``silence_ms`` is not positive, or ``records`` cannot be laid out.
    """
    if not silence_ms > 0:
        raise ValueError(f"silence_ms must be positive, got {silence_ms}")
    rows = sorted(events, key=lambda e: int(e.get("seq") or 0))
    start = _payload_of(rows, "session.start")
    end = _payload_of(rows, "session.end")
    duration = _duration(rows, end)
    if levels is None and records is not None and start.get("caller_format") is not None:
        levels = levels_of_records(records, start["caller_format"])
    turns = _turns(rows, duration, levels)
    marks = [m for m in (mark_of(row) for row in rows) if m is not None]
    if levels is not None:
        speech = {name: _runs(levels.speaking(name), levels.bin_ms) for name in ("caller", "agent")}
        quiet = ~(levels.speaking("caller") | levels.speaking("agent"))
        silences = _runs(np.concatenate([quiet, np.ones(1, dtype=bool)]), levels.bin_ms)
        silences = [(a, min(b, duration)) for a, b in silences if a < duration]
        speech_from = "audio"
    else:
        speech = _event_speech(turns)
        silences = _gaps(speech["caller"] + speech["agent"], duration)
        speech_from = "events"
    dead_air = [(a, b) for a, b in silences if b - a > silence_ms]
    marks += [
        Mark(a, "dead_air", f"dead air {(b - a) / 1000:.1f} s", span=(a, b)) for a, b in dead_air
    ]
    marks.sort(key=lambda m: m.t_ms)
    return Timeline(
        turns=turns,
        marks=marks,
        dead_air=dead_air,
        speech=speech,
        speech_from=speech_from,
        duration_ms=duration,
        silence_ms=silence_ms,
        session_id=session_id,
        agent=_str_or_none(start.get("agent")),
        door=door or _door(start),
        end_reason=_str_or_none(end.get("reason")),
    )


def _payload_of(rows: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any]:
    row = next((r for r in rows if r.get("type") == type_), None)
    payload = row.get("payload") if row is not None else None
    return payload if isinstance(payload, Mapping) else {}


def _t(row: Mapping[str, Any]) -> float:
    value = row.get("t_ms")
    return float(value) if isinstance(value, (int, float)) else 0.0


def _duration(rows: Sequence[Mapping[str, Any]], end: Mapping[str, Any]) -> float:
    stated = end.get("duration_ms")
    last = max((_t(r) for r in rows), default=0.0)
    return float(stated) if isinstance(stated, (int, float)) and stated >= last else last


def _door(start: Mapping[str, Any]) -> str | None:
    return "twilio" if start.get("stream_sid") else None


def _str_or_none(value: Any) -> str | None:
    return str(value) if value is not None else None


def _turns(rows: Sequence[Mapping[str, Any]], duration: float, levels: Levels | None) -> list[Turn]:
    """Caller and agent turns in order of their start (see the module docstring)."""
    turns: list[Turn] = []
    agent: dict[str, Turn] = {}
    speech_start: float | None = None
    speech_stop: float | None = None
    pending_end: float | None = None  # the caller's end of speech no answer has met yet
    running: list[Turn] = []  # agent turns with no end yet, by start
    heard = _utterances(levels)
    for i, row in enumerate(rows):
        kind, t = row.get("type"), _t(row)
        p = row.get("payload") if isinstance(row.get("payload"), Mapping) else {}
        assert isinstance(p, Mapping)
        if kind == "speech.started":
            speech_start, speech_stop = t, None
        elif kind == "speech.stopped":
            speech_stop = t
        elif kind == "turn:user" and p.get("typed"):  # no audio: at the instant it came
            turns.append(Turn("caller", t, f"(typed) {p.get('text') or ''}", end_ms=t))
            pending_end = t
        elif kind == "turn:user":
            length = _audio_length(p)
            end = speech_stop if speech_stop is not None else t
            begin = speech_start if speech_start is not None else max(0.0, end - length)
            near = min(heard, key=lambda u: abs(u[0] - begin), default=None)
            if near is not None and abs(near[0] - begin) <= _SNAP_MS:
                begin, end_heard = near  # the audio says when the caller spoke
            else:
                end_heard = end
            turns.append(Turn("caller", begin, str(p.get("text") or ""), end_ms=end_heard))
            pending_end = end
            speech_start = speech_stop = None
        elif kind == "response.start":
            rid = str(p.get("response_id"))
            first_audio = _first_audio(levels, t, _next_start(rows, i, duration))
            begin = t if first_audio is None else first_audio
            turn = Turn("agent", begin, None, response_id=rid, greeting=bool(p.get("greeting")))
            if pending_end is not None and not turn.greeting:
                turn.latency_from = "response.start" if first_audio is None else "audio"
                turn.latency_ms = round((first_audio or t) - pending_end, 1)
                pending_end = None
            for other in running:  # a new answer: the unfinished one is over
                other.end_ms, other.interrupted = min(t, other.end_ms or t), True
            running = [turn]
            agent[rid] = turn
            turns.append(turn)
        elif kind == "turn:agent" and str(p.get("response_id")) in agent:
            turn = agent[str(p.get("response_id"))]
            turn.text = str(p.get("text") or "")
            turn.interrupted = turn.interrupted or bool(p.get("interrupted"))
        elif kind == "playback.marked":
            rid = str(p.get("name") or "").removeprefix("response:")
            _finish(agent.get(rid), t, running)
        elif kind == "barge_in":
            cut = agent.get(str(p.get("response_id")))
            _finish(cut, t, running)
            if cut is not None:
                cut.interrupted = True
        elif kind == "failover.switch":  # the new provider's first audio: the answer starts
            for turn in running:
                if turn.latency_from == "response.start" and turn.latency_ms is not None:
                    turn.latency_ms = round(turn.latency_ms + t - turn.start_ms, 1)
                    turn.latency_from = "failover.switch"
                if turn.latency_from != "audio":
                    turn.start_ms = t
        elif kind == "provider.failed":
            for turn in running:  # an answer a provider failed in: the caller waits on
                turn.interrupted = True
                turn.end_ms = _silent_from(rows, i, t)
                if turn.latency_ms is not None and pending_end is None:
                    pending_end = turn.start_ms - turn.latency_ms
            running = []
    for turn in running:
        turn.end_ms = duration
    turns.sort(key=lambda turn: turn.start_ms)
    return turns


def _utterances(levels: Levels | None) -> list[Span]:
    """The caller's speech on the tape, runs less than :data:`_PAUSE_MS` apart joined."""
    if levels is None:
        return []
    joined: list[Span] = []
    for a, b in _runs(levels.speaking("caller"), levels.bin_ms):
        if joined and a - joined[-1][1] < _PAUSE_MS:
            joined[-1] = (joined[-1][0], b)
        else:
            joined.append((a, b))
    return joined


def _finish(turn: Turn | None, t: float, running: list[Turn]) -> None:
    if turn is not None:
        turn.end_ms = t if turn.end_ms is None else min(turn.end_ms, t)
        if turn in running:
            running.remove(turn)


def _audio_length(p: Mapping[str, Any]) -> float:
    a, b = p.get("audio_start_ms"), p.get("audio_end_ms")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > a:
        return float(b - a)
    return 0.0


def _next_start(rows: Sequence[Mapping[str, Any]], i: int, duration: float) -> float:
    return next((_t(r) for r in rows[i + 1 :] if r.get("type") == "response.start"), duration)


def _silent_from(rows: Sequence[Mapping[str, Any]], i: int, failed_at: float) -> float:
    """Where the caller's silence began for a failure at row ``i``: the following
    ``failover.switch`` says (its time less ``gap_ms``); else the failure's time."""
    for row in rows[i + 1 :]:
        if row.get("type") == "failover.switch":
            gap = (row.get("payload") or {}).get("gap_ms")
            if isinstance(gap, (int, float)):
                return min(failed_at, max(0.0, _t(row) - float(gap)))
            break
    return failed_at


def _first_audio(levels: Levels | None, t0: float, t1: float) -> float | None:
    """The start of the first agent speech bin in ``t0 .. t1`` (None without audio)."""
    if levels is None:
        return None
    lo, hi = int(t0 // levels.bin_ms), int(-(-t1 // levels.bin_ms))
    speaking = levels.speaking("agent")[lo:hi]
    hits = np.flatnonzero(speaking)
    return None if len(hits) == 0 else round((lo + int(hits[0])) * levels.bin_ms, 1)


def _event_speech(turns: Sequence[Turn]) -> dict[str, list[Span]]:
    speech: dict[str, list[Span]] = {"caller": [], "agent": []}
    for turn in turns:
        end = turn.end_ms if turn.end_ms is not None else turn.start_ms
        speech[turn.who].append((turn.start_ms, max(turn.start_ms, end)))
    return speech


def _gaps(spans: Sequence[Span], duration: float) -> list[Span]:
    """The stretches of ``0 .. duration`` no span covers."""
    gaps: list[Span] = []
    at = 0.0
    for a, b in sorted(spans):
        if a > at:
            gaps.append((at, min(a, duration)))
        at = max(at, b)
    if at < duration:
        gaps.append((at, duration))
    return [(a, b) for a, b in gaps if b > a]


def _runs(flags: Any, bin_ms: float) -> list[Span]:
    """The ``(t0, t1)`` ms of each run of true bins."""
    padded = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [
        (round(float(a) * bin_ms, 1), round(float(b) * bin_ms, 1))
        for a, b in zip(edges[::2], edges[1::2], strict=True)
    ]
