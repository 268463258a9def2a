"""The local agent's dialogue policy: intent in, what to do and say out. Pure code.

Deterministic by design (the same caller intent always gets the same plan),
built from the agent file: each intent names a reply and optionally a tool;
the reply may contain ``{result}``, replaced by the tool's output. An
utterance with no intent gets the agent's ``no_match_reply``.

Knowledge: an agent with ``knowledge`` also answers from its documents. The
questions its documents list (headings ending in ``?``) are recognized like
intent phrases, under the intent name ``knowledge: <question>``
(:func:`knowledge_intents`); such an utterance, or one with no intent at all,
becomes a ``search_knowledge`` call (:func:`knowledge_query`), and the best
passage's first sentence or two are the answer (:func:`knowledge_reply`),
or the ``no_match_reply`` when nothing matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from switchboard.orchestrator.agents import AgentSpec
from switchboard.orchestrator.knowledge import questions

from ..tools.knowledge import passages_of

TOOL_FAILED_REPLY = "Sorry, I'm not able to do that right now."
TOOL_PENDING_REPLY = "One moment, I'm checking that for you."
"""Said while a slow tool runs (its acknowledgement); the result follows."""
KNOWLEDGE_INTENT_PREFIX: Final = "knowledge: "
"""Intent names of knowledge questions start with this (then the question)."""
SPOKEN_MAX_CHARS: Final = 300
"""The longest answer read from a passage (about 20 seconds of speech)."""

_URL: Final = re.compile(r"\bhttps?://\S+|\bwww\.\S+")
_SENTENCE: Final = re.compile(r"(?<=[.!?])\s+")
_LIST_LINE: Final = re.compile(r"^\s*-\s+")


@dataclass(frozen=True)
class Plan:
    """What the agent does for one caller utterance."""

    intent: str | None
    tool: str | None
    reply_template: str

    def reply(self, tool_ok: bool = True, tool_output: str = "", *, pending: bool = False) -> str:
        """The text to speak, given the tool's result (if the plan has a tool);
        ``pending``: the tool only acknowledged (its result follows later)."""
        if self.tool is not None and pending:
            return TOOL_PENDING_REPLY
        if self.tool is not None and not tool_ok:
            return TOOL_FAILED_REPLY
        return self.reply_template.replace("{result}", tool_output.strip().rstrip("."))


def plan_reply(agent: AgentSpec, intent: str | None) -> Plan:
    """The plan for an utterance recognised as ``intent`` (None: no intent matched)."""
    for candidate in agent.intents:
        if candidate.name == intent:
            return Plan(candidate.name, candidate.tool, candidate.reply)
    return Plan(None, None, agent.no_match_reply)


def knowledge_intents(agent: AgentSpec) -> dict[str, tuple[str, ...]]:
    """The agent's knowledge questions as recognizer intents: ``knowledge: <question>`` ->
    ``(question,)``, leaving out a question that is also one of the intents' phrases
    (the intent keeps it)."""
    phrases = {" ".join(p.lower().split()) for i in agent.intents for p in i.phrases}
    return {
        KNOWLEDGE_INTENT_PREFIX + q: (q,)
        for q in questions(agent.knowledge)
        if " ".join(q.lower().split()) not in phrases
    }


def knowledge_query(agent: AgentSpec, intent: str | None, said: str) -> str | None:
    """What to search the agent's knowledge for, or None (answer from the intents).

    A recognized knowledge question is searched as written in the document; an
    utterance with no intent, as ``said`` (the caller's words), when the agent has
    knowledge.
    """
    if intent is not None and intent.startswith(KNOWLEDGE_INTENT_PREFIX):
        return intent.removeprefix(KNOWLEDGE_INTENT_PREFIX)
    if agent.knowledge and plan_reply(agent, intent).intent is None and said.strip():
        return said
    return None


def knowledge_reply(
    agent: AgentSpec,
    ok: bool,
    output: str,
    *,
    asked: bool,
    every_word: bool = False,
    pending: bool = False,
) -> str:
    """What to say after a ``search_knowledge`` call: the best passage, spoken
    (:func:`spoken_passage`); with none, the ``no_match_reply``; when the search
    failed, :data:`TOOL_FAILED_REPLY` for a recognized question (``asked``), else
    the ``no_match_reply``; :data:`TOOL_PENDING_REPLY` when the search was only
    acknowledged (``pending``: slower than its ``ack_ms``, its result follows).

    ``every_word``: take a passage only if it matched every word of the query.
    For words of the local recognizer's open transcript, which are often wrong
    ("ten of clubs" must not be answered with the passage that says "ten
    minutes"); a question from the documents or a transcript another provider
    heard need not.
    """
    if pending:
        return TOOL_PENDING_REPLY
    passages = passages_of(output) if ok else []
    if passages and (passages[0].every_word or not every_word):
        return spoken_passage(passages[0].text)
    return TOOL_FAILED_REPLY if asked and not ok else agent.no_match_reply


def spoken_passage(text: str, max_chars: int = SPOKEN_MAX_CHARS) -> str:
    """The start of a passage as a caller hears it: its first sentence, and the second
    too while both fit in ``max_chars``; a list read as one sentence ("a, b and c."),
    web addresses left out. A first sentence longer than ``max_chars`` is cut between
    words."""
    parts: list[str] = []
    items: list[str] = []

    def end_list() -> None:
        if items:
            listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
            parts.append(listed + ".")
            items.clear()

    for line in text.splitlines():
        line = _URL.sub("", line).strip()
        if _LIST_LINE.match(line):
            item = _LIST_LINE.sub("", line).rstrip(".;,")
            if item:
                items.append(item)
        elif line:
            end_list()
            parts.append(line)
    end_list()
    sentences = [s for s in _SENTENCE.split(" ".join(" ".join(parts).split())) if s]
    if not sentences:
        return ""
    spoken = sentences[0]
    if len(spoken) > max_chars:
        return spoken[:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + "."
    if len(sentences) > 1 and len(spoken) + 1 + len(sentences[1]) <= max_chars:
        spoken += " " + sentences[1]
    return spoken
