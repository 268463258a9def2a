"""``switchboard call`` as a user runs it: a real ``serve`` process, the CLI in another.

The example receptionist records its calls with ``announce: auto``; the
CLI's ``--from-state`` is the webhook's ``FromState``, so a caller from
California (all-party consent) hears the recording announced before the
greeting and a caller from Texas does not, and each call's recording row is
there.
"""

from __future__ import annotations

import json
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
