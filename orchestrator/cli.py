"""The ``switchboard`` command.

    switchboard serve [--host H] [--port P] [--workers N] [--data-dir DIR] [--public-url URL]
                      [--mode MODE] [--max-calls-per-worker N] [--max-local-calls-per-worker N]
    switchboard db migrate [--data-dir DIR]
    switchboard db status [--data-dir DIR]
    switchboard agent apply FILE.yaml [--data-dir DIR]
    switchboard tenant create NAME [--data-dir DIR]
    switchboard key create TENANT [--data-dir DIR]
    switchboard trace (export SESSION_ID -o FILE | import FILE | show FILE)  (see cli_trace)
    switchboard replay TRACE|SESSION_ID | --check DIR  (see cli_replay)
    switchboard call [--url URL] [--to NUMBER] (--say TEXT | --wav FILE)...
                     [--save-audio OUT.wav] [--json]
    switchboard recording decrypt FILE -o OUT.wav [--key private.pem] [--track T] [--raw]
    switchboard recording keygen [--kid KID]

Without ``DATABASE_URL`` every command uses the embedded PostgreSQL in the
data folder; see ``switchboard.orchestrator.config`` for the environment.

Exit status: 0 done; 1 it could not be done (no such tenant, the server or the
database unreachable, a file that cannot be read or opened); 2 the command line
is wrong (argparse's usage errors, a bad flag value or setting: ``ConfigError``).
``replay`` keeps its own: 0 the replay matches, 1 it differs, 2 it could not run.
"""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import json
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import trio
import trio_websocket

from . import (
    cli_recording,
    cli_recording_admin,
    cli_replay,
    cli_tenant_tools,
    cli_trace,
    cli_webhooks,
    devcreds,
)
from .agents import MODES
from .config import Settings, default_data_dir, usable_cores
from .errors import ConfigError, SwitchboardError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .store import Store

T = TypeVar("T")

DEMO_NUMBER = "+15005550006"
FAILED = 1
"""Exit status: what was asked could not be done."""
USAGE = 2
"""Exit status: the command line is wrong (argparse's own status for usage errors)."""

EPILOG = """environment:
  DATABASE_URL        PostgreSQL URL (default: embedded PostgreSQL in the data folder)
  PUBLIC_URL          URL Twilio reaches this server at (signatures are checked against it)
  TWILIO_AUTH_TOKEN   checks X-Twilio-Signature (default: a development token in the data folder)
  TWILIO_ACCOUNT_SID  with the auth token: transfers redirect live calls via Twilio's REST API
  LOG_FORMAT          json (default) or console
  MAX_CALLS_PER_WORKER, MAX_LOCAL_CALLS_PER_WORKER  capacity (see serve --help)
  OPENAI_API_KEY, OPENAI_REALTIME_URL            the openai-realtime mode
  GEMINI_API_KEY, GEMINI_LIVE_URL                the gemini-live mode
  STT_URL, STT_API_KEY (or DEEPGRAM_API_KEY)     cascaded: speech-to-text (Deepgram live)
  LLM_BASE_URL, LLM_API_KEY, LLM_MODEL           cascaded: OpenAI-compatible chat completions
  TTS_BASE_URL, TTS_API_KEY, TTS_MODEL, TTS_VOICE  cascaded: text-to-speech
"""


class _CallerLines(argparse.Action):
    """``--say`` and ``--wav`` append ``(kind, value)`` to one list, in the order typed."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        lines = [*(getattr(namespace, self.dest, None) or ()), (self.const, values)]
        setattr(namespace, self.dest, lines)


def version() -> str:
    """The installed package's version (``switchboard --version``)."""
    try:
        return importlib.metadata.version("switchboard")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="switchboard",
        description="Voice-call runtime: Twilio Media Streams calls to speech agents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"switchboard {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def data_dir_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="data folder: embedded PostgreSQL, dev credentials, spool "
            f"(default {default_data_dir()})",
        )

    serve = commands.add_parser(
        "serve",
        help="run the server (embedded PostgreSQL and the local agent by default)",
        description="Run the HTTP/WebSocket server. Applies the schema at start; on a fresh "
        "database also applies examples/receptionist.yaml, so a call to "
        f"{DEMO_NUMBER} works at once.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default 8080; 0: any free port)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes, each with its own event loop, all on one port (default: "
        f"the usable cores, here {usable_cores()}); the parent process starts the "
        "database, applies the schema, binds the port, restarts a worker that dies and, on "
        "SIGTERM or Ctrl-C, makes every worker drain its calls before it exits. Calls share "
        "only what is in PostgreSQL. 1: everything in this process",
    )
    serve.add_argument(
        "--max-calls-per-worker",
        type=int,
        default=None,
        metavar="N",
        help="calls one worker admits at once; beyond, calls are refused before they start "
        "(Twilio: the agent's when_busy TwiML; browser and /v1/realtime: HTTP 503) "
        "(default MAX_CALLS_PER_WORKER or 100)",
    )
    serve.add_argument(
        "--max-local-calls-per-worker",
        type=int,
        default=None,
        metavar="N",
        help="of those, calls whose first provider is local (CPU-heavy) (default "
        "MAX_LOCAL_CALLS_PER_WORKER or 2 x cores / workers)",
    )
    serve.add_argument("--public-url", default=None, help="overrides PUBLIC_URL")
    serve.add_argument(
        "--mode",
        default=None,
        choices=MODES,
        help="for this run, put MODE first in every call's fallback chain (the agent's "
        "own chain follows, ending with local; a session's own mode still wins; the "
        "agents stored are not changed); its credentials must be set (see environment below)",
    )
    data_dir_flag(serve)

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    migrate = db_commands.add_parser(
        "migrate", help="apply the schema versions the database lacks (serve does it at start)"
    )
    data_dir_flag(migrate)
    status = db_commands.add_parser("status", help="the applied and pending schema versions")
    data_dir_flag(status)

    agent = commands.add_parser("agent", help="manage agents")
    agent_commands = agent.add_subparsers(dest="agent_command", required=True, metavar="SUBCOMMAND")
    apply = agent_commands.add_parser(
        "apply",
        help="load an agent file (YAML) into the database",
        description="Create or update the agent a YAML file describes (by tenant and name) "
        "and route its phone numbers to it. Errors name the file, line and key.",
    )
    apply.add_argument("file", type=Path, help="agent file, e.g. examples/receptionist.yaml")
    data_dir_flag(apply)

    tenant = commands.add_parser("tenant", help="manage tenants")
    tenant_commands = tenant.add_subparsers(
        dest="tenant_command", required=True, metavar="SUBCOMMAND"
    )
    tenant_create = tenant_commands.add_parser(
        "create",
        help="create a tenant and its first API key (printed once)",
        description="Create the tenant NAME and an API key for it. The key is printed once; "
        "only its hash is stored.",
    )
    tenant_create.add_argument("name", help="the tenant's name (agent files name it in `tenant`)")
    data_dir_flag(tenant_create)

    key = commands.add_parser("key", help="manage tenant API keys")
    key_commands = key.add_subparsers(dest="key_command", required=True, metavar="SUBCOMMAND")
    key_create = key_commands.add_parser(
        "create",
        help="create an API key for a tenant (printed once)",
        description="Create another API key for the tenant TENANT (for rotation). The key is "
        "printed once; only its hash is stored.",
    )
    key_create.add_argument("tenant", help="the tenant's name")
    data_dir_flag(key_create)

    call = commands.add_parser(
        "call",
        help="place a test call, as Twilio would",
        description="Place a call to a running server the way Twilio does (signed webhook, "
        "Media Stream), say each --say/--wav line in turn, and print what happened.",
    )
    call.add_argument(
        "--url", default=None, help="server URL (default PUBLIC_URL or http://127.0.0.1:8080)"
    )
    call.add_argument("--to", default=DEMO_NUMBER, help=f"number to call (default {DEMO_NUMBER})")
    call.add_argument("--from", dest="from_number", default="+15005550001", help="caller's number")
    call.add_argument(
        "--from-state",
        default="CA",
        metavar="STATE",
        help="the caller's state, sent as Twilio's FromState (it decides whether a recording "
        "agent announces the recording; default CA, an all-party-consent state; '' sends none)",
    )
    call.add_argument(
        "--say",
        dest="lines",
        action=_CallerLines,
        const="say",
        default=[],
        metavar="TEXT",
        help="a line to say (eSpeak NG voice); --say and --wav lines are said in the order given",
    )
    call.add_argument(
        "--wav",
        dest="lines",
        action=_CallerLines,
        const="wav",
        default=[],
        type=Path,
        metavar="FILE",
        help="a WAV file to play as a line",
    )
    call.add_argument(
        "--save-audio",
        type=Path,
        default=None,
        metavar="OUT.wav",
        help="save what the caller heard",
    )
    call.add_argument("--json", action="store_true", help="print the summary as JSON")
    call.add_argument(
        "--fast", action="store_true", help="send audio as fast as possible (tests, benchmarks)"
    )
    call.add_argument(
        "--timeout", type=float, default=20.0, help="seconds to wait for each answer (default 20)"
    )
    call.add_argument(
        "--api-key",
        default=None,
        help="tenant API key (default SWITCHBOARD_API_KEY or the dev key)",
    )
    call.add_argument(
        "--auth-token",
        default=None,
        help="Twilio auth token (default TWILIO_AUTH_TOKEN or the dev token)",
    )
    data_dir_flag(call)
    cli_recording_admin.register(commands)
    cli_tenant_tools.register(commands)
    cli_webhooks.register(commands)
    cli_recording.register(commands)
    cli_trace.register(commands)
    cli_replay.register(commands)
    return parser


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return Settings.from_env(data_dir=args.data_dir, **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from . import logs, server, workers

    settings = _settings(
        args,
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        demo_mode=args.mode,
        workers=args.workers if args.workers is not None else usable_cores(),
        max_calls_per_worker=args.max_calls_per_worker,
        max_local_calls_per_worker=args.max_local_calls_per_worker,
    )
    logs.configure(settings.log_format, settings.log_level)
    try:
        if settings.workers == 1:
            trio.run(server.serve, settings)
        else:
            trio.run(workers.serve_workers, settings)
    except KeyboardInterrupt:
        pass
    except workers.WorkerStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    except (OSError, BaseExceptionGroup) as exc:  # trio nests a failure to listen in groups
        refused = _listen_error(exc)
        if refused is None:
            raise
        where = f"{settings.host}:{settings.port}"
        hint = "; is another server running there? pick another port with --port"
        detail = refused.strerror or str(refused)
        print(f"error: cannot listen on {where}: {detail}{hint}", file=sys.stderr)
        return FAILED
    return 0


def _listen_error(exc: BaseException) -> OSError | None:
    """The OSError that kept the server from listening (port in use, not allowed, no such
    address), found inside ``exc``'s exception groups; None for anything else."""
    if isinstance(exc, BaseExceptionGroup):
        return next(filter(None, map(_listen_error, exc.exceptions)), None)
    if isinstance(exc, OSError) and exc.errno in _LISTEN_ERRNOS:
        return exc
    return None


_LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL})


def cmd_db(args: argparse.Namespace) -> int:
    from .schema import migrate, schema_status
    from .server import open_database

    settings = _settings(args)
    with open_database(settings) as dsn:
        if args.db_command == "migrate":
            applied = migrate(dsn)
            for m in applied:
                print(f"applied {m.label}")
            if not applied:
                print("the schema is up to date")
            return 0
        state = schema_status(dsn)
    for row in state.applied:
        print(f"applied {row.version:04d}_{row.name}  {row.applied_at:%Y-%m-%d %H:%M:%S %Z}")
    if state.unversioned:
        print("the tables were made before versioned migrations: 0001 is applied again")
    for m in state.pending:
        print(f"pending {m.label}")
    if not state.pending:
        print("the schema is up to date")
    return 0


def cmd_agent_apply(args: argparse.Namespace) -> int:
    from .agent_file import load_agent_file
    from .db import Database, migrate
    from .server import open_database
    from .store import Store

    spec = load_agent_file(args.file)  # errors name file, line and key
    settings = _settings(args)
    settings.check_agent_modes(spec)  # missing credentials: an error now, not mid-call
    with open_database(settings) as dsn:
        migrate(dsn)
        db = Database(dsn)
        try:
            agent_id = Store(db).apply_agent(spec)
        finally:
            db.close()
    numbers = ", ".join(spec.phone_numbers) or "no phone numbers"
    print(f"applied agent {spec.name!r} (tenant {spec.tenant!r}, id {agent_id}): {numbers}")
    if spec.knowledge:
        from .knowledge import chunk_sources

        passages = len(chunk_sources(spec.knowledge))
        print(f"knowledge: {passages} passages from {len(spec.knowledge)} document(s) indexed")
    return 0


def _with_store(args: argparse.Namespace, work: Callable[[Store], T]) -> T:
    """Run ``work`` on a store of the configured (or embedded) database, migrated first."""
    from .db import Database, migrate
    from .server import open_database
    from .store import Store

    with open_database(_settings(args)) as dsn:
        migrate(dsn)
        db = Database(dsn)
        try:
            return work(Store(db))
        finally:
            db.close()


def cmd_tenant_create(args: argparse.Namespace) -> int:
    def create(store: Store) -> str | None:
        if store.tenant_by_name(args.name) is not None:
            return None
        return str(store.create_api_key(store.ensure_tenant(args.name)))

    key = _with_store(args, create)
    if key is None:
        print(
            f"error: tenant {args.name!r} exists; `switchboard key create {args.name}` "
            "makes another key",
            file=sys.stderr,
        )
        return FAILED
    print(f"created tenant {args.name!r}; its API key (shown once, keep it safe):\n{key}")
    return 0


def cmd_key_create(args: argparse.Namespace) -> int:
    def create(store: Store) -> str | None:
        tenant_id = store.tenant_by_name(args.tenant)
        return None if tenant_id is None else str(store.create_api_key(tenant_id))

    key = _with_store(args, create)
    if key is None:
        print(f"error: no tenant {args.tenant!r}", file=sys.stderr)
        return FAILED
    print(f"API key for tenant {args.tenant!r} (shown once, keep it safe):\n{key}")
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    from .caller import CallerLine, place_call

    settings = _settings(args)
    creds = devcreds.load(settings.data_dir)
    auth_token = (
        args.auth_token
        or settings.twilio_auth_token
        or (creds.twilio_auth_token if creds else None)
    )
    if not auth_token:
        print(
            "error: no Twilio auth token: pass --auth-token, set TWILIO_AUTH_TOKEN, or start "
            "`switchboard serve` once to create the development credentials",
            file=sys.stderr,
        )
        return USAGE
    api_key = (
        args.api_key or os.environ.get("SWITCHBOARD_API_KEY") or (creds.api_key if creds else None)
    )
    lines = [CallerLine.say(v) if kind == "say" else CallerLine.wav(v) for kind, v in args.lines]
    url = args.url or settings.base_url
    summary = trio.run(
        lambda: place_call(
            url,
            lines,
            to_number=args.to,
            from_number=args.from_number,
            from_state=args.from_state or None,
            auth_token=auth_token,
            api_key=api_key,
            realtime=not args.fast,
            save_audio=args.save_audio,
            response_timeout_s=args.timeout,
            progress=None if args.json else partial(print, flush=True),
        )
    )
    if args.json:
        print(json.dumps(summary.as_json(), indent=2))
        return 0
    print(f"  ended by the {summary.ended_by}")  # the turns were printed as they happened
    for line in summary.failovers:
        print(f"  failover: {line}")
    if summary.events_unread:
        print(f"  events not read: {summary.events_unread}", file=sys.stderr)
    else:
        print(f"  events logged: {summary.events_logged}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": cmd_serve,
        "db": cmd_db,
        "agent": cmd_agent_apply,
        "tenant": cmd_tenant_create,
        "key": cmd_key_create,
        "call": cmd_call,
    }
    try:
        return (getattr(args, "handler", None) or handlers[args.command])(args)
    except ConfigError as exc:  # a flag, a setting or a file the user gave is wrong
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    except SwitchboardError as exc:  # what was asked could not be done
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    except (OSError, httpx.HTTPError, trio_websocket.HandshakeError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return FAILED


if __name__ == "__main__":
    raise SystemExit(main())
