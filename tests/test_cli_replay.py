"""``switchboard replay`` as an on-call engineer and an agent builder's CI run it.

The traces are calls recorded through the real call nursery on a MockClock
(``test_replay_engine.record``), written to files as ``trace export`` writes them.
The command's exit status says match (0), differs (1) or cannot be replayed (2);
the report names the first divergence; a what-if shows how the caller's
experience changes; ``--check DIR`` is a regression suite.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from test_replay_engine import LINES, record

from switchboard.orchestrator.cli import main
from switchboard.orchestrator.trace_file import Trace, write_trace
from switchboard.testing import Fault, Script, Turn


@pytest.fixture(scope="module")
def stalled() -> Trace:
    """A call whose primary never answers the caller: a stall, then the backup answers."""
    return record(
        Script(faults=(Fault("stall", turn=1),)),
        Script(turns=(Turn(say="We open at nine.", caller_text=LINES[0]),)),
        speak_at=(3.0,),
        hang_up_at=12.0,
    )


def written(trace: Trace, path: Path) -> Path:
    write_trace(path, trace)
    return path


def edited(trace: Trace, path: Path) -> Path:
    """``trace`` with the backup's answer changed in the recorded events."""
    events = json.loads(json.dumps(trace.events))
    answer = [e for e in events if e["type"] == "turn:agent"][-1]
    answer["payload"]["text"] = "We never open."
    return written(Trace(trace.manifest, trace.session, events, trace.agent, trace.records), path)


def test_an_unchanged_trace_replays_to_a_match(
    stalled: Trace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = written(stalled, tmp_path / "stalled.trace")
    assert main(["replay", str(path), "--no-timeline"]) == 0
    out = capsys.readouterr().out
    assert "MATCH" in out and f"{len(stalled.events)} events" in out
    assert main(["replay", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["exit"] == 0 and data["comparison"]["matches"] is True
    assert data["replay"]["providers"][0] == {
        "source": "openai-realtime#1",
        "played": "openai-realtime#1",
    }


def test_a_trace_that_differs_names_the_event_and_shows_both_sides(
    stalled: Trace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = edited(stalled, tmp_path / "edited.trace")
    assert main(["replay", str(path), "--no-timeline"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERS" in out and "turn:agent text expected 'We never open.'" in out
    assert "got 'We open at nine.'" in out
    marked = [line for line in out.splitlines() if line.startswith(">")]
    assert len(marked) == 1 and "We never open." in marked[0] and "We open at nine." in marked[0]
    assert main(["replay", str(path), "--json"]) == 1
    first = json.loads(capsys.readouterr().out)["comparison"]["first_divergence"]
    assert first["what"] == "payload.text" and first["expected"]["type"] == "turn:agent"


def test_what_cannot_be_replayed_exits_2_with_the_reason(
    stalled: Trace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = written(
        Trace(stalled.manifest, stalled.session, stalled.events, stalled.agent, None),
        tmp_path / "no-audio.trace",
    )
    assert main(["replay", str(silent)]) == 2
    assert "no tape" in capsys.readouterr().err
    future = tmp_path / "future.trace"
    with zipfile.ZipFile(future, "w") as zf:
        zf.writestr("manifest.json", json.dumps({"format": "switchboard-trace", "version": 99}))
    assert main(["replay", str(future)]) == 2
    assert "format version 99" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "nothing.trace"), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["replayable"] is False


def test_a_what_if_with_a_shorter_stall_timeout_shows_the_earlier_failover(
    stalled: Trace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = written(stalled, tmp_path / "stalled.trace")
    status = main(["replay", str(path), "--no-timeline", "--set", "failover.stall_timeout_ms=1000"])
    out = capsys.readouterr().out
    assert status == 1  # the caller's experience differs
    assert "What if failover.stall_timeout_ms=1000" in out
    recorded = next(e for e in stalled.events if e["type"] == "provider.failed")
    row = next(line for line in out.splitlines() if "first failure at" in line)
    assert f"{recorded['t_ms'] / 1000:.3f} s" in row
    assert f"{(recorded['t_ms'] - 1000) / 1000:.3f} s" in row
    assert main(["replay", str(path), "--set", "failover.no_such=1"]) == 2
    assert "no such setting" in capsys.readouterr().err


def test_check_replays_a_folder_and_fails_when_any_trace_differs(
    stalled: Trace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    written(stalled, suite / "a.trace")
    (suite / "notes.txt").write_text("not a trace")
    assert main(["replay", "--check", str(suite)]) == 0
    assert "MATCH" in capsys.readouterr().out
    edited(stalled, suite / "b.trace")
    assert main(["replay", "--check", str(suite), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [t["status"] for t in report["traces"]] == ["match", "differs"]
    assert "We never open." in report["traces"][1]["first_divergence"]


def test_the_timeline_in_the_terminal_and_as_a_page_beside_its_audio(
    stalled: Trace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = written(stalled, tmp_path / "stalled.trace")
    page = tmp_path / "stalled.html"
    assert main(["replay", str(path), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    failed = next(e for e in stalled.events if e["type"] == "provider.failed")
    lines = out.splitlines()
    assert any(
        line.lstrip().startswith(f"! {failed['t_ms'] / 1000:.1f}s provider failed")
        for line in lines
    )
    assert any("failover openai-realtime -> gemini-live" in line for line in lines)
    said = next(e for e in stalled.events if e["type"] == "turn:user")["payload"]["text"]
    assert any(f'caller  "{said}"' in line for line in lines)
    html = page.read_text()
    assert "data-track" in html and "stalled.wav" in html
    assert page.with_suffix(".wav").read_bytes()[:4] == b"RIFF"
    assert main(["replay", str(path), "--json"]) == 0
    timeline = json.loads(capsys.readouterr().out)["timeline"]
    assert [m["kind"] for m in timeline["marks"] if m["kind"] == "failover"] == ["failover"]
