"""Switchboard's exceptions: one tree, named for who broke what.

::

    SwitchboardError                 anything Switchboard raises on purpose
    ├── TransportError               the caller's side (Twilio, browser, client) broke
    ├── ProviderError                a speech provider failed
    │   ├── ProviderUnavailable      connect refused, HTTP 5xx, server-class error event
    │   └── ProviderStalled          no output within the stall timeout
    ├── ToolError                    a tool call failed
    ├── AuthError                    a key, token or signature was refused
    ├── ConfigError                  the configuration is wrong
    │   └── AgentFileError           ... in an agent file, at a line and key
    └── StorageError                 PostgreSQL (or the spool) failed

Vendor exceptions are mapped where they enter, with the original kept as the
cause: ``raise StorageError("...") from exc``.
"""

from __future__ import annotations

from typing import final

__all__ = [
    "AgentFileError",
    "AuthError",
    "ConfigError",
    "ProviderError",
    "ProviderStalled",
    "ProviderUnavailable",
    "StorageError",
    "SwitchboardError",
    "ToolError",
    "TransportError",
]


class SwitchboardError(Exception):
    """Base class of every exception Switchboard raises on purpose."""


class TransportError(SwitchboardError):
    """The caller's side of a call broke: a malformed frame, a dropped socket."""


class ProviderError(SwitchboardError):
    """A speech provider failed; the failover supervisor decides what follows."""


class ProviderUnavailable(ProviderError):  # noqa: N818 - the name the design uses
    """The provider refused or dropped the connection, or reported a server-class error."""


class ProviderStalled(ProviderError):  # noqa: N818 - the name the design uses
    """The provider produced no output within the stall timeout."""


class ToolError(SwitchboardError):
    """A tool call failed (unknown tool, bad arguments, or the tool itself raised)."""


class AuthError(SwitchboardError):
    """An API key, a runtime token or a request signature was refused."""


class ConfigError(SwitchboardError):
    """The configuration is wrong: an agent file, a setting, a conflicting phone number."""


@final
class AgentFileError(ConfigError):
    """An agent file is wrong at a known place.

    ``str(err)`` reads ``FILE:LINE: key 'KEY': MESSAGE``, for example
    ``receptionist.yaml:14: key 'intents[2].phrases': expected a list of strings,
    got a number``. The ``LINE:`` part is left out when ``line`` is None (the
    file could not be read) and the ``key '...':`` part when ``key`` is None
    (a YAML syntax error).

    Attributes:
        path: the file as the caller named it (``"<string>"`` for text).
        line: 1-based line number, or None.
        key: dotted path of the offending key (``intents[2].phrases``), or None.
        message: what is wrong, in words.
    """

    def __init__(self, path: str, line: int | None, key: str | None, message: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        where = path if line is None else f"{path}:{line}"
        what = message if key is None else f"key '{key}': {message}"
        super().__init__(f"{where}: {what}")

    def __reduce__(self) -> tuple[type[AgentFileError], tuple[str, int | None, str | None, str]]:
        return (AgentFileError, (self.path, self.line, self.key, self.message))


class StorageError(SwitchboardError):
    """PostgreSQL refused or failed a request (the psycopg error is the cause)."""
