"""``switchboard call`` as a user runs it: a real ``serve`` process, the CLI in another.

The example receptionist records its calls with ``announce: auto``; the
CLI's ``--from-state`` is the webhook's ``FromState``, so a caller from
California (all-party consent) hears the recording announced before the
greeting and a caller from Texas does not, and each call's recording row is
there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio
from fault_support import AUTH_TOKEN, server_process


async def _call(url: str, data_dir: Path, *flags: str) -> dict[str, object]:
    command = [sys.executable, "-m", "switchboard.orchestrator.cli", "call", "--url", url]
    command += ["--data-dir", str(data_dir), "--auth-token", AUTH_TOKEN, "--json", "--fast"]
    command += ["--say", "thank you goodbye", *flags]
    done = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode()
    summary: dict[str, object] = json.loads(done.stdout)
    return summary


async def test_the_callers_state_decides_whether_the_recording_is_announced(
    database_url: str, tmp_path: Path
) -> None:
    async with server_process(tmp_path, database_url) as server:
        california = await _call(server.url, server.data_dir, "--from-state", "CA")
        texas = await _call(server.url, server.data_dir, "--from-state", "TX")
        rows = {
            session: server.rows(
                "select payload->>'rule', payload->>'announced' from call_events"
                " where session_id = %s and type = 'recording.consent'",
                session,
            )
            for session in (california["session_id"], texas["session_id"])
        }
        recorded = server.rows("select count(*) from recordings")[0][0]
    greeting = "Thanks for calling Bright Smile Dental"
    assert str(california["greeting"]).startswith("This call is recorded. " + greeting)
    assert str(texas["greeting"]).startswith(greeting)
    assert rows[california["session_id"]] == [("auto:all-party", "true")]
    assert rows[texas["session_id"]] == [("auto:one-party", "false")]
    assert recorded == 2


async def test_each_turn_is_printed_as_it_happens(database_url: str, tmp_path: Path) -> None:
    """Without ``--json`` the call's lines come while it runs: turn 1's answer is on
    the screen before turn 2 is said, not all at the end."""
    async with server_process(tmp_path, database_url) as server:
        command = [sys.executable, "-m", "switchboard.orchestrator.cli", "call"]
        command += ["--url", server.url, "--data-dir", str(server.data_dir)]
        command += ["--auth-token", AUTH_TOKEN, "--from-state", "TX"]
        command += ["--say", "what are your opening hours", "--say", "thank you goodbye"]
        process = await trio.lowlevel.open_process(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdout is not None
        lines: list[tuple[float, str]] = []
        buffer = b""
        with trio.fail_after(90):
            while chunk := await process.stdout.receive_some():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    lines.append((trio.current_time(), line.decode()))
            assert await process.wait() == 0
    ended = trio.current_time()
    text = [line for _, line in lines]
    at = {line.strip().split(":")[0]: t for t, line in lines}
    assert text[0].startswith("call CA") and "greeting after" in text[1], text
    assert "turn 1: said 'what are your opening hours'" in text[2], text
    assert "heard as" in text[3] and "agent (" in text[4] and "open" in text[4].lower(), text
    assert "turn 2: said 'thank you goodbye'" in text[5], text
    assert any(line.strip().startswith("ended by the") for line in text), text
    # Turn 1's answer was printed before turn 2 was said, seconds before the end.
    turn_1_answer = lines[4][0]
    assert turn_1_answer < at["turn 2"] <= ended and ended - turn_1_answer > 1.0
