"""What a newcomer meets first on the command line (issue 15, point 5)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import pytest
import trio
from provider_calls import place_call

from switchboard.orchestrator import caller, cli
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.orchestrator.caller import CallerLine, CallSummary, failover_lines
from switchboard.testing import Fault, Script, Turn


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    expected = importlib.metadata.version("switchboard")
    assert capsys.readouterr().out == f"switchboard {expected}\n"


def test_call_says_its_lines_in_the_order_typed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--wav a --say b --wav c`` used to play both WAVs before any --say line."""
    placed: list[list[CallerLine]] = []

    async def place_call(url: str, lines: list[CallerLine], **kwargs: Any) -> CallSummary:
        placed.append(lines)
        return CallSummary(call_sid="CA1", session_id=None, greeting_latency_ms=None)

    monkeypatch.setattr(caller, "place_call", place_call)
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    first, last = tmp_path / "first.wav", tmp_path / "last.wav"
    for path, tone in ((first, 1000), (last, 2000)):
        with wave.open(str(path), "wb") as out:  # 0.2 s of a distinct square tone each
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            period = 8000 // tone
            out.writeframes(
                b"".join(
                    (8000 if (i // (period // 2)) % 2 else -8000).to_bytes(2, "little", signed=True)
                    for i in range(1600)
                )
            )
    argv = ["call", "--fast", "--auth-token", "t", "--wav", str(first), "--say", "hello there"]
    argv += ["--wav", str(last)]
    assert cli.main(argv) == 0
    (lines,) = placed
    assert lines == [CallerLine.wav(first), CallerLine.say("hello there"), CallerLine.wav(last)]


def test_serve_on_a_port_in_use_says_so_in_one_line(database_url: str, tmp_path: Path) -> None:
    """It printed a 40-line exception group, exit 1 and no word of what to do."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "warning"}
    with busy:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "switchboard.orchestrator.cli", "serve"),
                *("--workers", "1", "--port", str(port), "--data-dir", str(tmp_path)),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert errors == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; is another server "
        "running there? pick another port with --port"
    ]


def test_the_servers_own_log_lines_are_json_like_the_rest() -> None:
    """hypercorn's and the standard library's lines were plain text between the JSON."""
    script = (
        "import logging, structlog\n"
        "from switchboard.orchestrator import logs\n"
        "logs.configure('json', 'info')\n"
        "logging.getLogger('hypercorn.error').info('Running on http://127.0.0.1:8080')\n"
        "logging.getLogger('psycopg.pool').warning('connection lost')\n"
        "logging.getLogger('psycopg.pool').info('not shown below warning')\n"
        "structlog.get_logger().info('call ended', turns=3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["event"], line.get("logger"), line["level"]) for line in lines] == [
        ("Running on http://127.0.0.1:8080", "hypercorn.error", "info"),
        ("connection lost", "psycopg.pool", "warning"),
        ("call ended", None, "info"),
    ]
    assert all("timestamp" in line for line in lines)


async def test_a_test_calls_summary_says_what_failed_and_what_the_caller_heard(
    autojump_clock: trio.abc.Clock,
) -> None:
    """`switchboard call` said nothing of failovers; the lines come from the call's events."""
    agent = parse_agent_yaml(
        "name: fo\ntenant: t\ngreeting: Hello.\ninstructions: Help.\nmode: openai-realtime\n"
        "fallback: [gemini-live]\nintents: []\n"
    )
    call = await place_call(
        agent,
        Script(
            turns=(Turn(say="We open at nine every weekday morning.", caller_text="hours?"),),
            faults=(Fault("stall", turn=1, after_audio_ms=600),),
        ),
        Script(turns=(Turn(say="We open at nine.", caller_text="hours?"),)),
        lines=("when are you open",),
        speak_at=(3.0,),
        hang_up_at=12.0,
    )
    events = [{"type": e.type, "payload": dict(e.payload)} for e in call.events()]
    switch = next(e["payload"] for e in events if e["type"] == "failover.switch")
    assert failover_lines(events) == [
        "turn 0: openai-realtime failed (stall: no output for 1500 ms in the middle of a response)",
        f"turn 0: switched from openai-realtime to gemini-live; the caller heard "
        f"{switch['gap_ms']} ms of silence",
    ]


def test_exit_status_is_2_for_a_wrong_command_line_and_1_for_what_could_not_be_done(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    data = ["--data-dir", str(tmp_path)]
    with pytest.raises(SystemExit) as usage:
        cli.main(["serve", "--port", "not-a-port"])
    assert usage.value.code == 2  # argparse
    monkeypatch.setenv("PLAYOUT_LEAD_MS", "soon")
    assert cli.main(["db", "status", *data]) == 2  # a bad setting
    monkeypatch.delenv("PLAYOUT_LEAD_MS")
    assert cli.main(["key", "create", "no-such-tenant", *data]) == 1
    assert "no tenant 'no-such-tenant'" in capsys.readouterr().err
    assert cli.main(["tenant", "create", "acme", *data]) == 0
    assert cli.main(["tenant", "create", "acme", *data]) == 1  # exists already
    # An agent file the user names that is not there: the command line is wrong.
    assert cli.main(["agent", "apply", str(tmp_path / "missing.yaml"), *data]) == 2
