"""The terminal timeline: what a paged engineer reads, from hand-made event rows.

The rows follow the emitters' payloads (``actors/supervisor.py`` and friends): a call
whose first provider stalls in its first answer and fails over to ``local``, a tool
call, a barge-in, and a long silence before the caller hangs up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from switchboard.codecs import ulaw_encode
from switchboard.codecs.recording_format import Kind, Record
from switchboard.orchestrator.replay.timeline import (
    WIDTH,
    build_timeline,
    render_text,
    timeline_json,
)
from switchboard.orchestrator.replay.timeline_page import (
    render_page,
    waveform_peaks,
    write_timeline_html,
)


def rows(*events: tuple[float, str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"seq": i, "type": type_, "t_ms": t, "payload": payload}
        for i, (t, type_, payload) in enumerate(events, 1)
    ]


START = (
    5.0,
    "session.start",
    {
        "agent": "receptionist",
        "stream_sid": "MZ1",
        "caller_format": {"encoding": "pcmu", "sample_rate": 8000},
        "chain": ["openai-realtime", "local"],
    },
)
LONG_ANSWER = (
    "We are open Monday to Friday from eight in the morning until six in the evening. " * 3
)

FAILOVER_CALL = rows(
    START,
    (50.0, "response.start", {"response_id": "r1", "greeting": True}),
    (2400.0, "turn:agent", {"text": "Thanks for calling.", "response_id": "r1"}),
    (2400.0, "response.done", {"response_id": "r1", "greeting": True}),
    (2500.0, "playback.marked", {"name": "response:r1"}),
    (3000.0, "speech.started", {"audio_offset_ms": 3000.0}),
    (4300.0, "speech.stopped", {"audio_offset_ms": 4300.0}),
    (4350.0, "turn:user", {"text": "what are your opening hours", "audio_start_ms": 3000.0,
                           "audio_end_ms": 4300.0}),
    (5000.0, "response.start", {"response_id": "r2", "greeting": False}),
    (7100.0, "provider.failed", {"provider": "openai-realtime", "kind": "stall", "turn": 0,
                                 "detail": "no output for 1500 ms", "attempt": 1}),
    (7130.0, "provider.ready", {"provider": "local"}),
    (7140.0, "response.start", {"response_id": "r3#g2", "greeting": False}),
    (7150.0, "tool:call", {"call_id": "c1", "name": "lookup_hours", "arguments": {}}),
    (7160.0, "tool:result", {"call_id": "c1", "name": "lookup_hours", "ok": True,
                             "output": "Monday to Friday, 8 AM to 6 PM"}),
    (7700.0, "failover.switch", {"from": "openai-realtime", "to": "local", "turn": 0,
                                 "gap_ms": 2100.0}),
    (7720.0, "turn:agent", {"text": LONG_ANSWER, "response_id": "r3#g2"}),
    (7720.0, "response.done", {"response_id": "r3#g2", "interrupted": False}),
    (9000.0, "speech.started", {"audio_offset_ms": 100.0}),
    (9040.0, "barge_in", {"response_id": "r3#g2", "heard_ms": 1300.0, "sent_ms": 6000.0,
                          "clear_after_ms": 40.0}),
    (9800.0, "speech.stopped", {"audio_offset_ms": 900.0}),
    (9850.0, "turn:user", {"text": "thanks", "audio_start_ms": 100.0, "audio_end_ms": 900.0}),
    (10550.0, "response.start", {"response_id": "r4#g2", "greeting": False}),
    (11000.0, "turn:agent", {"text": "You are welcome.", "response_id": "r4#g2"}),
    (11000.0, "response.done", {"response_id": "r4#g2"}),
    (11600.0, "playback.marked", {"name": "response:r4#g2"}),
    (19800.0, "hangup", {"reason": "caller hung up"}),
    (19850.0, "session.end", {"reason": "caller hung up", "turns_completed": 2,
                              "duration_ms": 19850.0}),
)  # fmt: skip


def test_the_failover_shows_the_failure_the_switch_with_its_silence_and_the_wait() -> None:
    text = render_text(build_timeline(FAILOVER_CALL), color=False)
    lines = text.splitlines()
    assert lines[0].startswith("session ?  agent receptionist  door twilio  19.9 s")
    assert "ended: caller hung up" in lines[0]
    assert "  ! 7.1s provider failed: openai-realtime stall (0 turns done)" in text
    assert "  > 7.7s failover openai-realtime -> local, caller heard 2.1 s of silence" in lines
    # The stalled answer was cut off; the backup's answer counts the whole wait, from the
    # caller's end of speech (4.3 s) to its first audio (the switch, 7.7 s): 3.4 s.
    assert "    5.0s  agent (+700 ms)  (no transcript: cut off) [interrupted]" in lines
    (answer,) = [line for line in lines if "agent (+3.4 s)" in line]
    assert answer.startswith('    7.7s  agent (+3.4 s)  "We are open Monday')
    # ... after the failure and the switch, in the order the caller lived them.
    order = [next(i for i, line in enumerate(lines) if key in line) for key in (
        "provider failed", "tool call lookup_hours", "failover openai", "agent (+3.4 s)",
    )]  # fmt: skip
    assert order == sorted(order)


def test_the_tool_call_the_barge_in_and_the_latency_are_marked() -> None:
    text = render_text(build_timeline(FAILOVER_CALL))
    assert "  * 7.2s tool call lookup_hours({})" in text
    assert "  * 7.2s tool lookup_hours ok: Monday to Friday, 8 AM to 6 PM" in text
    assert (
        "  x 9.0s barge-in: the caller cut the agent off after 1.3 s heard (cleared in 40 ms)"
        in (text)
    )
    assert '    9.0s  caller  "thanks"' in text
    assert '   10.6s  agent (+750 ms)  "You are welcome."' in text
    assert "[interrupted]" in next(line for line in text.splitlines() if "We are open" in line)


def test_dead_air_is_a_silence_of_both_sides_longer_than_the_threshold() -> None:
    timeline = build_timeline(FAILOVER_CALL)
    # The caller heard the answer end at 11.6 s and hung up at 19.8 s: 8.2 s of nothing.
    # The stalled answer's silence (5.6 s to 7.7 s: 2.1 s) is under 3 s.
    assert timeline.dead_air == [(11600.0, 19850.0)]
    assert "  ~ 11.6s dead air 8.2 s" in render_text(timeline)
    shorter = build_timeline(FAILOVER_CALL, silence_ms=2000.0)
    assert [round(b - a) for a, b in shorter.dead_air] == [2100, 8250]
    footer = render_text(shorter).splitlines()[-1]
    assert "failovers 1" in footer and "dead air 2 (10.3 s)" in footer


def test_every_line_fits_a_hundred_columns_and_long_texts_end_in_an_ellipsis() -> None:
    text = render_text(build_timeline(FAILOVER_CALL))
    assert all(len(line) <= WIDTH for line in text.splitlines())
    answer = next(line for line in text.splitlines() if "We are open" in line)
    assert answer.endswith('\u2026" [interrupted]') or answer.endswith("\u2026 [interrupted]")
    coloured = render_text(build_timeline(FAILOVER_CALL), color=True)
    assert "\x1b[31;1m  ! 7.1s provider failed" in coloured


def test_the_json_has_the_turns_marks_and_totals_and_is_json() -> None:
    data = timeline_json(build_timeline(FAILOVER_CALL))
    assert json.loads(json.dumps(data)) == data
    kinds = [m["kind"] for m in data["marks"]]
    assert kinds.count("failover") == 1 and kinds.count("provider_failed") == 1
    switch = next(m for m in data["marks"] if m["kind"] == "failover")
    assert switch["t_ms"] == 7700.0 and switch["data"]["gap_ms"] == 2100.0
    assert data["totals"]["caller_turns"] == 2 and data["totals"]["latency_max_ms"] == 3400.0
    assert data["speech_from"] == "events"


def tone(ms: float, rate: int = 8000) -> bytes:
    t = np.arange(int(ms * rate / 1000)) / rate
    return ulaw_encode((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16))


def silence(ms: float, rate: int = 8000) -> bytes:
    return b"\xff" * int(ms * rate / 1000)


def test_the_audio_beats_the_events_for_dead_air_and_latency() -> None:
    """Events say the agent talked from 0.1 s to 10 s; the tape says it fell silent at 2 s
    (a player that ran dry): the audio wins, and 6 s of dead air shows."""
    events = rows(
        START,
        (100.0, "response.start", {"response_id": "r1", "greeting": True}),
        (8300.0, "speech.started", {}),
        (9400.0, "speech.stopped", {}),
        (9500.0, "turn:user", {"text": "hello?"}),
        (10000.0, "playback.marked", {"name": "response:r1"}),
        (10500.0, "session.end", {"reason": "caller hung up", "duration_ms": 10500.0}),
    )
    records = [
        Record(Kind.AGENT_AUDIO, 100.0, tone(1900)),
        Record(Kind.CALLER_AUDIO, 0.0, silence(8000)),
        Record(Kind.CALLER_AUDIO, 8000.0, tone(1000)),
    ]
    by_events = build_timeline(events)
    assert by_events.dead_air == []
    by_audio = build_timeline(events, records=records)
    assert by_audio.speech_from == "audio"
    assert by_audio.speech["agent"] == [(100.0, 2000.0)]
    assert by_audio.speech["caller"] == [(8000.0, 9000.0)]
    assert by_audio.dead_air == [(2000.0, 8000.0)]
    assert "  ~ 2.0s dead air 6.0 s" in render_text(by_audio)
    (caller,) = [t for t in by_audio.turns if t.who == "caller"]
    assert (caller.start_ms, caller.end_ms) == (8000.0, 9000.0)  # the tape's, not the VAD's


def test_a_call_with_no_events_but_its_start_renders_and_bad_thresholds_are_refused() -> None:
    text = render_text(build_timeline(rows(START)))
    assert text.splitlines()[0].startswith("session ?  agent receptionist")
    with pytest.raises(ValueError, match="silence_ms"):
        build_timeline(rows(START), silence_ms=0)


# -- the page's data and files (the browser test is tests/test_timeline_page.py) ----------


def test_the_waveform_is_the_agent_track_as_heard_a_clear_cuts_it() -> None:
    records = [
        Record(Kind.AGENT_AUDIO, 0.0, tone(2000)),
        Record(Kind.CALLER_AUDIO, 0.0, silence(400) + tone(600)),
        Record(Kind.AGENT_CLEARED, 500.0, b""),
    ]
    peaks = waveform_peaks(records, {"encoding": "pcmu", "sample_rate": 8000}, peak_ms=100.0)
    assert peaks["agent"][:5] == pytest.approx([8000 / 32768] * 5, rel=0.05)
    assert peaks["agent"][5:] == [0.0] * 5  # sent, never heard
    assert peaks["caller"][:4] == [0.0] * 4 and min(peaks["caller"][4:10]) > 0.2


def test_replay_html_writes_the_page_and_the_wav_it_plays_beside_it(tmp_path: Path) -> None:
    records = [
        Record(Kind.AGENT_AUDIO, 0.0, tone(1000)),
        Record(Kind.CALLER_AUDIO, 0.0, silence(1500) + tone(1000)),
    ]
    out = tmp_path / "call.html"
    write_timeline_html(out, FAILOVER_CALL, records, {"encoding": "pcmu", "sample_rate": 8000})
    wav = (tmp_path / "call.wav").read_bytes()
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert len(wav) == 44 + 8000 * 2.5 * 2 * 2  # 2.5 s, stereo PCM16
    data = page_data(out.read_text())
    assert data["audio_url"] == "call.wav"
    assert data["timeline"]["speech_from"] == "audio"
    assert max(data["peaks"]["caller"]) > 0.2 and max(data["peaks"]["agent"]) > 0.2
    # No tape: no WAV, and the page says the call was not recorded.
    write_timeline_html(tmp_path / "bare.html", FAILOVER_CALL, None, None)
    assert not (tmp_path / "bare.wav").exists()
    assert page_data((tmp_path / "bare.html").read_text())["audio_url"] is None


def page_data(page: str) -> Any:
    start = page.index('<script type="application/json" id="timeline-data">')
    blob = page[page.index(">", start) + 1 : page.index("</script>", start)]
    return json.loads(blob)


def test_a_transcript_cannot_break_out_of_the_page() -> None:
    evil = '</script><script>alert(1)</script><img src=x onerror="alert(2)">'
    events = [*FAILOVER_CALL, {"seq": 99, "type": "turn:user", "t_ms": 19000.0,
                               "payload": {"text": evil}}]  # fmt: skip
    page = render_page(
        build_timeline(events), peaks={}, peak_ms=20.0, audio_url=None, title="<b>x</b>"
    )
    assert "<script>alert" not in page and "<img" not in page and "<b>x</b>" not in page
    assert page.count("</script>") == 2  # the data's and the code's, nothing more
    assert any(t["text"] == evil for t in page_data(page)["timeline"]["turns"])
