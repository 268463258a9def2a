"""The ``local`` provider's thinker and voice for the cascaded pipeline (its ears are
:class:`~.listener.LocalListener`).

- :class:`IntentPolicy`: the deterministic dialogue policy
  (:func:`.policy.plan_reply`) and its tool call; a turn heard by another
  provider before a failover is understood from its text (an intent phrase
  it contains). A knowledge question, or a turn with no intent when the agent
  has knowledge, is answered from a ``search_knowledge`` call
  (:func:`.policy.knowledge_query`); from PocketSphinx's open transcript only
  a passage holding every word of it is taken.
- :class:`EspeakVoice`: eSpeak NG in a speech worker process, through the
  agent's speech cache (:class:`~.assets.LocalAssets`: the greeting, the
  no-match reply and the apology are made ahead), already in the caller's
  format. A synthesis counts as answer work for progress reports; a lost
  worker fails the stage (kind ``crash``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from switchboard.orchestrator.agents import SEARCH_KNOWLEDGE, AgentSpec

from ..context import AudioFormat
from ..messages import CallerSaid, CallerTranscript, ConversationItem
from ..pipeline import CallTool, Play, Say, StageFailed, ToolCall
from .assets import LocalAssets
from .policy import KNOWLEDGE_INTENT_PREFIX, knowledge_query, knowledge_reply, plan_reply
from .progress import WorkTracker
from .speech import SpeechWorkerLost

__all__ = ["EspeakVoice", "IntentPolicy"]


class IntentPolicy:
    """The agent's intents -> a reply, calling the intent's tool first if it has one."""

    def __init__(self, agent: AgentSpec) -> None:
        self.agent = agent

    async def __call__(
        self,
        history: Sequence[ConversationItem],
        utterance: CallerTranscript | None,
        say: Say,
        call_tool: CallTool,
    ) -> None:
        if utterance is not None:
            intent, said = utterance.intent, utterance.text
        else:  # a turn heard by the provider before a failover: only its text is known
            last = history[-1] if history else None
            said = last.text if isinstance(last, CallerSaid) else ""
            intent = self.intent_of(said)
        query = knowledge_query(self.agent, intent, said)
        if query is not None:
            result = await call_tool(ToolCall(SEARCH_KNOWLEDGE, {"query": query}))
            asked = intent is not None and intent.startswith(KNOWLEDGE_INTENT_PREFIX)
            heard_here = utterance is not None and not asked  # an open transcript: unsure
            reply = knowledge_reply(
                self.agent,
                result.ok,
                result.output,
                asked=asked,
                every_word=heard_here,
                pending=result.pending,
            )
            await say(reply)
            return
        plan = plan_reply(self.agent, intent)
        if plan.tool is None:
            await say(plan.reply())
            return
        result = await call_tool(ToolCall(plan.tool))
        await say(plan.reply(result.ok, result.output, pending=result.pending))

    def intent_of(self, text: str) -> str | None:
        """The intent one of whose phrases ``text`` contains (the longest phrase wins)."""
        said = " ".join(re.findall(r"[a-z']+", text.lower()))
        matches = [
            (len(phrase), intent.name)
            for intent in self.agent.intents
            for phrase in intent.phrases
            if f" {phrase.lower()} " in f" {said} "
        ]
        return max(matches)[1] if matches else None


class EspeakVoice:
    """eSpeak NG through the agent's speech cache, in the caller's format ``fmt``."""

    def __init__(
        self, assets: LocalAssets, fmt: AudioFormat, work: WorkTracker | None = None
    ) -> None:
        self.assets = assets
        self.fmt = fmt
        self.work = work if work is not None else WorkTracker()

    async def __call__(self, text: str, play: Play) -> None:
        chunk = self.assets.cached(text, self.fmt)
        if chunk is None:
            with self.work.working("synthesizing"):
                try:
                    chunk = await self.assets.speech(text, self.fmt)
                except SpeechWorkerLost as exc:
                    raise StageFailed("crash", f"speech synthesis: {exc}") from exc
        await play(chunk)
