"""``python -m switchboard.testing MODE``: serve a mode's fake provider(s) on loopback.

    python -m switchboard.testing openai-realtime [--port 9100] [--script FILE]
    python -m switchboard.testing gemini-live     [--port 9101] [--script FILE]
    python -m switchboard.testing cascaded        [--port 9102] [--script FILE]

It prints the environment to give ``switchboard serve`` (for example
``OPENAI_REALTIME_URL=ws://127.0.0.1:9100/v1/realtime``) and serves until
Ctrl-C. ``cascaded`` starts three fakes on consecutive ports: Deepgram live
speech-to-text, chat completions and speech synthesis. Without ``--script``
the fakes play :data:`DEMO_SCRIPT`, a receptionist that looks up the hours and
hangs up after a goodbye; a script file is YAML or JSON in the format of
:mod:`switchboard.testing.script` (faults included).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import trio

from .script import Script, ToolStep, Turn
from .websocket import serve

DEMO_SCRIPT = Script(
    greeting="Thanks for calling Bright Smile Dental. How can I help you today?",
    turns=(
        Turn(
            say="Let me check our hours.",
            tool=ToolStep("lookup_hours"),
            then_say="We are open Monday to Friday from eight to six.",
            caller_text="what are your opening hours",
        ),
        Turn(
            say="Thank you for calling. Goodbye!",
            tool=ToolStep("hangup_call"),
            caller_text="thank you goodbye",
        ),
    ),
)
"""What the fakes say when no script is given (matches ``examples/receptionist.yaml``)."""

DEFAULT_PORTS = {"openai-realtime": 9100, "gemini-live": 9101, "cascaded": 9102}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m switchboard.testing",
        description="Serve fake providers that speak the real wire protocols, on loopback, "
        "for `switchboard serve --mode MODE`.",
        epilog="Then, in another terminal: `OPENAI_REALTIME_URL=... switchboard serve --mode "
        "openai-realtime` (the fake prints the exact line) and `switchboard call --say ...`.",
    )
    parser.add_argument("mode", choices=sorted(DEFAULT_PORTS), help="the provider mode to fake")
    parser.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=None, help="port (default 9100, 9101 or 9102-9104; 0: any)"
    )
    parser.add_argument("--script", default=None, help="a YAML/JSON script file (default: demo)")
    return parser


async def serve_mode(
    mode: str,
    script: Script,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[dict[str, str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``mode``'s fakes until cancelled; ``started()`` with the environment to set."""
    from .http import serve_http

    async with trio.open_nursery() as nursery:
        env: dict[str, str] = {}
        if mode == "openai-realtime":
            from .fake_openai_realtime import FakeOpenAIRealtime

            bound = await nursery.start(serve, FakeOpenAIRealtime(script).handler, host, port)
            env["OPENAI_REALTIME_URL"] = f"ws://{host}:{bound}/v1/realtime"
        elif mode == "gemini-live":
            from .fake_gemini_live import FakeGeminiLive

            bound = await nursery.start(serve, FakeGeminiLive(script).handler, host, port)
            env["GEMINI_LIVE_URL"] = f"ws://{host}:{bound}/ws/BidiGenerateContent"
        elif mode == "cascaded":
            from .fake_chat import FakeChat
            from .fake_deepgram import FakeDeepgram
            from .fake_tts import FakeTTS

            bound = await nursery.start(serve, FakeDeepgram(script).handler, host, port)
            env["STT_URL"] = f"ws://{host}:{bound}/v1/listen"
            chat = await nursery.start(serve_http, FakeChat(script).handler, host, _next(port, 1))
            env["LLM_BASE_URL"] = f"{chat}/v1"
            tts = await nursery.start(serve_http, FakeTTS(script).handler, host, _next(port, 2))
            env["TTS_BASE_URL"] = f"{tts}/v1"
        else:
            raise ValueError(f"no fakes for mode {mode!r}")
        task_status.started(env)


def _next(port: int, offset: int) -> int:
    return 0 if port == 0 else port + offset


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        script = DEMO_SCRIPT if args.script is None else Script.load(args.script)
    except (OSError, ValueError, TypeError) as exc:
        print(f"error: {exc}")
        return 2
    port = DEFAULT_PORTS[args.mode] if args.port is None else args.port

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            env = await nursery.start(serve_mode, args.mode, script, args.host, port)
            print(f"fake {args.mode} ready; start the runtime with:", flush=True)
            exports = " ".join(f"{k}={v}" for k, v in env.items())
            print(f"  {exports} switchboard serve --mode {args.mode}", flush=True)

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
