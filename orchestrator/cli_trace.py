"""The ``switchboard trace`` commands: export a call's trace, import one, show one.

    switchboard trace export SESSION_ID -o FILE [--no-audio] [--key PRIVATE.pem] [--data-dir DIR]
    switchboard trace import FILE [--replace] [--data-dir DIR]
    switchboard trace show FILE

The file's format is :mod:`.trace_file`; what goes in is :mod:`.trace_export`,
what comes out :mod:`.trace_import`. Exit status (the ``switchboard`` command's
rule): 0 done; 1 it could not be done (not a trace, an unknown format version, no
such session, the session already present without ``--replace``, a recording that
cannot be decrypted, a file that cannot be read or written); 2 the command line
is wrong.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

from switchboard.codecs.recording_format import Kind, unpack_provider_event

from .config import Settings, default_data_dir
from .trace_file import Trace, read_trace, write_trace

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    """Add ``trace`` and its subcommands to the CLI's subparsers ``commands``."""
    trace = commands.add_parser(
        "trace",
        help="export, import or show a call's trace (events, agent, audio, provider messages)",
        description="A call's trace: one self-contained file with the agent as the call "
        "started on it, every event, both audio tracks with their chunk index, each "
        "provider message as it arrived, and each tool result.",
    )
    trace.set_defaults(handler=run)
    sub = trace.add_subparsers(dest="trace_command", required=True, metavar="SUBCOMMAND")

    def data_dir_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help=f"data folder (default {default_data_dir()})",
        )

    export = sub.add_parser(
        "export",
        help="write a call's trace to a file",
        description="Write the trace of call SESSION_ID to FILE (a ZIP). The recording's "
        "audio is decrypted into the trace (the manifest says so): keep the file as you "
        "would the recording.",
    )
    export.add_argument("session_id", type=UUID, metavar="SESSION_ID")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    export.add_argument("--no-audio", action="store_true", help="leave the audio tracks out")
    export.add_argument(
        "--key",
        type=Path,
        default=None,
        metavar="PRIVATE.pem",
        help="the tenant's RSA private key, for a recording sealed for it",
    )
    data_dir_flag(export)

    load = sub.add_parser(
        "import",
        help="load a trace into this installation",
        description="Load the call in FILE into this installation's database and recording "
        "store: its tenant (by name), agent version, session, events, turns, call log and "
        "recording (sealed again under this server's keyring).",
    )
    load.add_argument("file", type=Path, metavar="FILE")
    load.add_argument(
        "--replace", action="store_true", help="replace the session if it is already here"
    )
    data_dir_flag(load)

    show = sub.add_parser("show", help="print a trace's manifest and counts")
    show.add_argument("file", type=Path, metavar="FILE")


def run(args: argparse.Namespace) -> int:
    """Run the ``trace`` subcommand ``args`` names; the exit status."""
    if args.trace_command == "show":
        print(describe(read_trace(args.file)))
        return 0
    from .db import Database, migrate
    from .recording_store import open_store
    from .server import open_database
    from .store import Store

    settings = Settings.from_env(data_dir=args.data_dir)
    key = args.key.read_bytes() if getattr(args, "key", None) else None
    trace = read_trace(args.file) if args.trace_command == "import" else None
    with open_database(settings) as dsn:
        migrate(dsn)
        with Database(dsn) as db:
            store, recordings = Store(db), open_store(settings)
            keyring = settings.recording_keyring()
            if trace is None:
                from .trace_export import export_trace

                trace = export_trace(
                    store,
                    recordings,
                    keyring,
                    args.session_id,
                    audio=not args.no_audio,
                    private_key=key,
                )
                write_trace(args.output, trace)
                print(f"wrote {args.output}: {summary_line(trace)}")
                return 0
            from .trace_import import import_trace

            done = import_trace(store, recordings, keyring, trace, dsn=dsn, replace=args.replace)
    verb = "replaced" if done.replaced else "imported"
    print(
        f"{verb} session {done.session_id} (tenant {trace.manifest['tenant']['name']!r}):"
        f" {done.events} events, " + ("the recording" if done.recording else "no recording")
    )
    return 0


def summary_line(trace: Trace) -> str:
    counts = trace.counts()
    return (
        f"{counts['events']} events, {counts['tool_results']} tool results, "
        f"audio {trace.manifest.get('audio')}"
    )


def describe(trace: Trace) -> str:
    """The manifest and the counts, a few lines for the on-call engineer."""
    m = trace.manifest
    agent = m.get("agent") or {}
    fmt = m.get("caller_format") or {}
    counts = trace.counts()
    end = next((e for e in reversed(trace.events) if e.get("type") == "session.end"), None)
    lines = [
        f"trace of session {m.get('session_id')} ({m.get('format')} version {m.get('version')},"
        f" made {m.get('created')})",
        f"  door {m.get('door')}, tenant {(m.get('tenant') or {}).get('name')!r},"
        f" agent {agent.get('name')!r} version {str(agent.get('version'))[:12]}"
        f" (snapshot {agent.get('snapshot', 'present' if trace.agent else 'not kept')})",
        f"  caller format {fmt.get('encoding')} {fmt.get('sample_rate')} Hz",
        f"  events {counts['events']}, tool results {counts['tool_results']}"
        + (
            f", ended after {end['payload'].get('duration_ms')} ms: {end['payload'].get('reason')}"
            if end
            else ", no session.end"
        ),
        f"  audio: {m.get('audio')}",
    ]
    if trace.records is not None:
        lines.append(
            f"  caller {counts['caller_chunks']} chunks ({counts['caller_bytes']} bytes),"
            f" agent {counts['agent_chunks']} chunks ({counts['agent_bytes']} bytes),"
            f" clears {counts['clears']}, provider messages {counts['provider_messages']},"
            f" instance records {counts['instance_records']}"
        )
        by_source = Counter(
            source
            for source in (_source(r.data) for r in trace.records if r.kind is Kind.PROVIDER_EVENT)
            if source is not None
        )
        for source, n in sorted(by_source.items()):
            lines.append(f"    {source}: {n} messages")
    lines.append(f"  parts: {', '.join(m.get('parts') or [])}")
    return "\n".join(lines)


def _source(data: bytes) -> str | None:
    try:
        return unpack_provider_event(data)[0]
    except ValueError:
        return None
