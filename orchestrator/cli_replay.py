"""``switchboard replay``: re-run a recorded call, say whether it went the same way, show it.

    switchboard replay TRACE|SESSION_ID [--json] [--html OUT.html] [--no-timeline]
                       [--agent FILE] [--set PATH=VALUE]... [--chain MODE,...] [--against MODE]
                       [--tolerance-ms MS] [--silence-ms MS] [--data-dir DIR] [--key PRIVATE.pem]
    switchboard replay --check DIR [--json] [--tolerance-ms MS]

Exit status: 0 the replay matches the recording (with a what-if: the caller's
experience is the same), 1 it differs, 2 the trace cannot be replayed (the reason
is printed: not a trace, an unknown format version, no audio, no provider
records). ``--check DIR`` replays every trace in DIR: 1 if any differs, else 2 if
any cannot be replayed, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from .config import default_data_dir
from .errors import SwitchboardError
from .replay.api import Unreplayable, WhatIf
from .trace_file import Trace, TraceError, read_trace

__all__ = ["register", "run"]

EXIT_MATCH, EXIT_DIFFERS, EXIT_UNREPLAYABLE = 0, 1, 2


def register(commands: Any) -> None:
    """Add ``replay`` to the CLI's subparsers ``commands``."""
    p = commands.add_parser(
        "replay",
        help="re-run a recorded call on virtual time; diff it, show its timeline, try a fix",
        description="Re-run a recorded call through the same actors on virtual time (a "
        "ten-minute call takes well under a second), with the caller's recorded side and "
        "each provider and tool answering as recorded, and compare the replay's events "
        "with the recorded ones. With --agent/--set/--chain/--against, play the caller's "
        "recorded side against a changed configuration and show how the caller's "
        "experience would differ. Exit status: 0 same, 1 differs, 2 cannot be replayed.",
        epilog="examples:\n"
        "  switchboard trace export 5f1c... -o stalled.trace && switchboard replay stalled.trace\n"
        "  switchboard replay stalled.trace --set failover.stall_timeout_ms=1000\n"
        "  switchboard replay stalled.trace --html stalled.html\n"
        "  switchboard replay --check traces/   (in an agent repository's CI)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=run)
    p.add_argument(
        "target",
        nargs="?",
        metavar="TRACE|SESSION_ID",
        help="a trace file (switchboard trace export), or a session id of this installation",
    )
    p.add_argument("--check", type=Path, metavar="DIR", help="replay every trace in DIR")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--html", type=Path, metavar="OUT.html", help="write the timeline page")
    p.add_argument("--no-timeline", action="store_true", help="leave the timeline out")
    p.add_argument(
        "--silence-ms",
        type=float,
        default=3000.0,
        metavar="MS",
        help="dead air: a silence of both sides longer than this (default 3000)",
    )
    p.add_argument(
        "--tolerance-ms",
        type=float,
        default=None,
        metavar="MS",
        help="how far a replayed time may be from the recorded one (default 250)",
    )
    what = p.add_argument_group("what-if (play the recorded caller against a change)")
    what.add_argument("--agent", type=Path, metavar="FILE", help="another agent file (YAML)")
    what.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="change an agent setting, e.g. failover.stall_timeout_ms=1000 (repeatable)",
    )
    what.add_argument(
        "--chain",
        metavar="MODE,...",
        help="another fallback chain, e.g. local or gemini-live,local",
    )
    what.add_argument("--against", metavar="MODE", help="put MODE first in the chain")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"data folder, for a SESSION_ID (default {default_data_dir()})",
    )
    p.add_argument(
        "--key",
        type=Path,
        default=None,
        metavar="PRIVATE.pem",
        help="the tenant's RSA private key, for a SESSION_ID whose recording is sealed for it",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``switchboard replay``; the exit status."""
    if args.check is not None:
        if args.target is not None:
            raise SwitchboardError("give a TRACE|SESSION_ID or --check DIR, not both")
        from .replay.check import check_folder

        return check_folder(args.check, tolerance_ms=args.tolerance_ms, as_json=args.json)
    if args.target is None:
        raise SwitchboardError("replay what? give a trace file or a session id (see --help)")
    try:
        trace = _load(args)
    except TraceError as exc:  # not a trace, an unknown version, a part missing
        return _cannot(args, str(exc))
    what_if = _what_if(args)
    from .replay.session import replay_and_report

    try:
        result = replay_and_report(
            trace,
            what_if,
            tolerance_ms=args.tolerance_ms,
            silence_ms=args.silence_ms,
            timeline=not args.no_timeline and not args.json,
            html=args.html,
        )
    except Unreplayable as exc:
        return _cannot(args, str(exc))
    if args.json:
        print(json.dumps(result.data, indent=2, ensure_ascii=False, default=str))
    else:
        print(result.text)
    return result.exit_status


def _cannot(args: argparse.Namespace, reason: str) -> int:
    if args.json:
        print(json.dumps({"replayable": False, "reason": reason, "exit": EXIT_UNREPLAYABLE}))
    else:
        print(f"cannot replay: {reason}", file=sys.stderr)
    return EXIT_UNREPLAYABLE


def _load(args: argparse.Namespace) -> Trace:
    path = Path(args.target)
    if path.exists():
        return read_trace(path)
    try:
        session_id = UUID(args.target)
    except ValueError:
        raise TraceError(f"{args.target}: no such file, and not a session id") from None
    return _export(args, session_id)


def _export(args: argparse.Namespace, session_id: UUID) -> Trace:
    """The trace of ``session_id`` from this installation's database and recordings."""
    from .config import Settings
    from .db import Database, migrate
    from .recording_store import open_store
    from .server import open_database
    from .store import Store
    from .trace_export import export_trace

    settings = Settings.from_env(data_dir=args.data_dir)
    key = args.key.read_bytes() if args.key else None
    started = time.perf_counter()
    with open_database(settings) as dsn:
        migrate(dsn)
        with Database(dsn) as db:
            trace = export_trace(
                Store(db),
                open_store(settings),
                settings.recording_keyring(),
                session_id,
                private_key=key,
            )
    if not args.json:
        print(f"(read session {session_id} in {time.perf_counter() - started:.1f} s)")
    return trace


def _what_if(args: argparse.Namespace) -> WhatIf:
    from .replay.what_if import parse_setting

    agent = None
    if args.agent is not None:
        from .agent_file import load_agent_file

        agent = load_agent_file(args.agent)
    settings = dict(parse_setting(item) for item in args.set)
    chain = [m.strip() for m in args.chain.split(",") if m.strip()] if args.chain else None
    return WhatIf(agent=agent, settings=settings, chain=chain, against=args.against)
