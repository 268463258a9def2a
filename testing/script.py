"""What a fake provider says and when it misbehaves: one script format for every fake.

A :class:`Script` answers caller utterances in order: the n-th utterance the
fake hears (n = 1, 2, ...) gets ``turns[n - 1]``, or ``fallback`` once the
list runs out. A turn may say something, call one tool, and say something
after the tool's result arrives. ``greeting`` is what the fake says when the
runtime asks for a response before the caller has spoken.

Faults are injected by connection (``connection``: 1 for the first
connection to this fake, 2 for the second, ...; 0 for every connection) and
by turn (``turn``: 0 for the greeting or the handshake, n for the answer to
the n-th utterance):

- ``http_5xx``: refuse the WebSocket handshake (or the HTTP request) with ``status``.
- ``error_event``: send the provider's error event instead of the answer.
- ``stall``: stop sending after ``after_audio_ms`` of the answer's audio
  (0: never answer), keeping the connection open; with ``before_transcript``
  the caller's transcript is not sent either (OpenAI transcribes the caller
  asynchronously: a server that stalls may never send it).
- ``drop``: close the connection abruptly after ``after_messages`` more
  server messages (0: at once) once ``turn`` is reached.
- ``slow_first_byte``: wait ``delay_ms`` before the first message of the answer.

Scripts load from JSON or YAML (``Script.from_mapping``)::

    greeting: Hello from the fake.
    turns:
      - caller_text: what are your opening hours
        say: Let me check.
        tool: {name: lookup_hours, arguments: {}}
        then_say: We are open nine to five.
    faults:
      - {kind: stall, turn: 2, after_audio_ms: 400}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

FaultKind = Literal["http_5xx", "error_event", "stall", "drop", "slow_first_byte"]
FAULT_KINDS: Final = get_args(FaultKind)


@dataclass(frozen=True)
class ToolStep:
    """A function call the fake makes: ``name`` with JSON ``arguments``.

    ``on_error``: said instead of the turn's ``then_say`` when the result is an
    error (fakes whose wire says so: Gemini Live's ``{"error": ...}``), as a
    model tells the caller that what it tried did not work.
    """

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    on_error: str = ""


@dataclass(frozen=True)
class Turn:
    """The fake's answer to one caller utterance.

    Attributes:
        say: spoken first (may be empty when the turn starts with a tool call).
        tool: a function call made after ``say``; the fake waits for its result.
        then_say: spoken after the tool's result arrived.
        caller_text: the transcript the fake reports for the caller's
            utterance (providers transcribe the caller; the fake cannot).
        follow_up: said when the runtime asks for a response with a note of its
            own after this turn (a slow tool's result arriving late: OpenAI
            Realtime, a ``system`` message then ``response.create``); empty:
            such a request is answered like a repeated turn.
    """

    say: str = ""
    tool: ToolStep | None = None
    then_say: str = ""
    caller_text: str = "(caller speech)"
    follow_up: str = ""

    @property
    def text(self) -> str:
        """Everything this turn says, in order."""
        return " ".join(t for t in (self.say, self.then_say) if t)


@dataclass(frozen=True)
class Fault:
    """A misbehaviour (see the module docstring for each kind)."""

    kind: FaultKind
    turn: int = 0
    connection: int = 0
    status: int = 503
    after_audio_ms: float = 0.0
    after_messages: int = 0
    delay_ms: float = 0.0
    before_transcript: bool = False

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if self.kind == "http_5xx" and not 500 <= self.status <= 599:
            raise ValueError(f"http_5xx needs a 5xx status, got {self.status}")

    def applies(self, connection: int, turn: int) -> bool:
        return self.connection in (0, connection) and self.turn == turn


@dataclass(frozen=True)
class Script:
    """A fake provider's behaviour (see the module docstring)."""

    greeting: str = "Hello, this is the test provider."
    turns: tuple[Turn, ...] = ()
    fallback: Turn = Turn(say="I am a test provider and have nothing more scripted.")
    faults: tuple[Fault, ...] = ()

    def turn(self, n: int) -> Turn:
        """The answer to the ``n``-th caller utterance (1-based)."""
        return self.turns[n - 1] if 0 < n <= len(self.turns) else self.fallback

    def fault(self, kind: FaultKind, *, connection: int, turn: int) -> Fault | None:
        """The first fault of ``kind`` for this connection and turn, or None."""
        return next(
            (f for f in self.faults if f.kind == kind and f.applies(connection, turn)), None
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Script:
        """A script from a YAML or JSON file (JSON is YAML).

        Raises:
            OSError: the file cannot be read.
            ValueError: it is not a script (see :meth:`from_mapping`).
        """
        import yaml

        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: a script is a mapping of greeting, turns, faults")
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Script:
        """A script from parsed JSON/YAML (the module docstring shows the shape).

        Raises:
            ValueError: an unknown key, a bad fault kind or a malformed turn.
        """
        unknown = set(data) - {"greeting", "turns", "fallback", "faults"}
        if unknown:
            raise ValueError(f"unknown script keys: {', '.join(sorted(unknown))}")
        turns = tuple(_turn(t) for t in data.get("turns") or ())
        faults = tuple(Fault(**f) for f in data.get("faults") or ())
        base = cls()
        return cls(
            greeting=str(data.get("greeting", base.greeting)),
            turns=turns,
            fallback=_turn(data["fallback"]) if "fallback" in data else base.fallback,
            faults=faults,
        )


def _turn(data: Mapping[str, Any]) -> Turn:
    tool = data.get("tool")
    return Turn(
        say=str(data.get("say", "")),
        tool=(
            ToolStep(tool["name"], dict(tool.get("arguments") or {}), str(tool.get("on_error", "")))
            if tool
            else None
        ),
        then_say=str(data.get("then_say", "")),
        caller_text=str(data.get("caller_text", Turn.caller_text)),
    )
