"""Which fallback chain a call runs on, and why.

A call's chain is the agent's own (``mode``, then ``fallback``, then ``local``) unless
something overrides its head. From the strongest:

1. ``session``: the session's ``mode`` (``POST /v1/sessions`` ``mode``, carried in the
   session token): browser calls and ``/v1/realtime`` with a session token;
2. ``test_mode``: a test session (``"test_mode": true``) runs on ``local``, predictable
   and free;
3. ``query``: Twilio's voice webhook URL says ``?mode=MODE`` (the operator sets it in
   the number's configuration, so it is covered by Twilio's signature);
4. ``number``: the agent file gives the dialled number a mode
   (``phone_numbers: [{number: "+1...", mode: gemini-live}]``);
5. ``config``: the runtime configuration's chain (``serve --mode``, the runtime
   configuration API and file; :attr:`.runtime.Runtime.configured_chain`);
6. ``agent``: the agent's own chain.

An override puts its modes first and keeps the rest of the agent's chain after them, so
the agent's fallbacks still serve when the override's provider fails. ``session.start``
records the chain used and ``mode_source``, the rule that chose its head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from .agents import MODES, AgentSpec
from .tokens import SessionClaims

ModeSource = Literal["session", "test_mode", "query", "number", "config", "agent"]
MODE_SOURCES: Final[tuple[ModeSource, ...]] = (
    "session",
    "test_mode",
    "query",
    "number",
    "config",
    "agent",
)


@dataclass(frozen=True)
class ChosenChain:
    """The agent as the call runs it (its ``mode`` and ``fallback`` the chosen chain's
    head and rest) and the rule that chose the head."""

    agent: AgentSpec
    source: ModeSource

    @property
    def first(self) -> str:
        """The first provider mode of the chain."""
        return self.agent.mode

    @property
    def local_first(self) -> bool:
        """Whether the call starts on ``local`` (it needs a local-call slot)."""
        return self.agent.mode == "local"


def with_chain_first(agent: AgentSpec, modes: Sequence[str]) -> AgentSpec:
    """``agent`` with ``modes`` first in its chain, then the rest of its own chain (each
    mode once; ``local`` stays last, added by the call whatever the chain says)."""
    if not modes:
        return agent
    chain = list(dict.fromkeys([*modes, agent.mode, *agent.fallback]))
    return replace(agent, mode=chain[0], fallback=tuple(chain[1:]))


def chain_for_call(
    agent: AgentSpec,
    *,
    session_mode: str | None = None,
    test_mode: bool = False,
    query_mode: str | None = None,
    number_mode: str | None = None,
    configured: Sequence[str] | None = None,
) -> ChosenChain:
    """The chain a call runs on (see the module docstring for the order).

    Args:
        agent: the agent as stored.
        session_mode: the session's own ``mode``, when the session asked for one.
        test_mode: the session is a test session.
        query_mode: Twilio's webhook ``?mode=``.
        number_mode: the dialled number's mode in the agent file.
        configured: the runtime configuration's chain (None or empty: none).

    Raises:
        ValueError: a given mode is not one of :data:`.agents.MODES` (the doors check
            what callers send before this).
    """
    for mode in (session_mode, query_mode, number_mode, *(configured or ())):
        if mode is not None and mode not in MODES:
            raise ValueError(f"unknown provider mode {mode!r}")
    if session_mode:
        return ChosenChain(with_chain_first(agent, [session_mode]), "session")
    if test_mode:
        return ChosenChain(with_chain_first(agent, ["local"]), "test_mode")
    if query_mode:
        return ChosenChain(with_chain_first(agent, [query_mode]), "query")
    if number_mode:
        return ChosenChain(with_chain_first(agent, [number_mode]), "number")
    if configured:
        return ChosenChain(with_chain_first(agent, configured), "config")
    return ChosenChain(agent, "agent")


def chain_for_session(
    agent: AgentSpec, claims: SessionClaims, configured: Sequence[str] | None
) -> ChosenChain:
    """The chain of a call made with a session token (browser, ``/v1/realtime``): the
    session's own ``mode`` when it asked for one, ``local`` for a test session, else
    the configured chain or the agent's own as they are now."""
    return chain_for_call(
        agent,
        session_mode=claims.mode if claims.mode_source == "session" else None,
        test_mode=claims.test_mode,
        configured=configured,
    )
