"""The local post-call analyser: deterministic, offline, from the call's own record.

Rules (the result's shape is :mod:`.analysis_spec`'s):

- ``caller_intent``: the intent the local provider matched most often on the
  caller's turns (``turn:user`` events' ``intent``; the first on a tie), else null;
- ``outcome``: ``transferred`` if a ``transfer_to_human`` tool call was made or
  the end reason names a transfer; ``failed`` if the fallback chain was
  exhausted or the end reason is an error; ``no_conversation`` if the caller
  never spoke; else ``completed``;
- ``sentiment``: caller words from two short lists (:data:`POSITIVE`,
  :data:`NEGATIVE`); more of one than the other decides, else neutral;
- each criterion: met if its ``intent`` was the caller's or one of its
  ``phrases`` occurs in the transcript (case-insensitive); null with neither;
- ``summary``: one or two sentences built from the above.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Final

from .analysis_spec import CallFacts, weighted_score

__all__ = ["NEGATIVE", "POSITIVE", "analyse_locally"]

POSITIVE: Final = frozenset(
    {
        "thanks",
        "thank",
        "great",
        "perfect",
        "good",
        "wonderful",
        "appreciate",
        "excellent",
        "helpful",
        "awesome",
        "lovely",
    }
)
NEGATIVE: Final = frozenset(
    {
        "angry",
        "terrible",
        "bad",
        "awful",
        "frustrated",
        "frustrating",
        "useless",
        "ridiculous",
        "complaint",
        "annoyed",
        "upset",
        "worst",
        "unacceptable",
    }
)
FAILED_REASONS: Final = ("error", "failed", "provider", "server lost")


def analyse_locally(call: CallFacts) -> dict[str, Any]:
    """The analysis of ``call`` (the :mod:`.analysis_spec` shape, ``analyser: local``)."""
    intents = [
        str(e["payload"]["intent"])
        for e in call.events
        if e.get("type") == "turn:user" and isinstance(e.get("payload", {}).get("intent"), str)
    ]
    caller_intent = Counter(intents).most_common(1)[0][0] if intents else None
    tools = [
        str(e.get("payload", {}).get("name", ""))
        for e in call.events
        if e.get("type") == "tool:call"
    ]
    caller_lines = [text for role, text in call.turns if role == "caller"]
    reason = call.end_reason.lower()
    if "transfer_to_human" in tools or "transfer" in reason:
        outcome = "transferred"
    elif any(e.get("type") == "failover.exhausted" for e in call.events) or any(
        word in reason for word in FAILED_REASONS
    ):
        outcome = "failed"
    elif not caller_lines:
        outcome = "no_conversation"
    else:
        outcome = "completed"
    words = re.findall(r"[a-z']+", " ".join(caller_lines).lower())
    balance = sum(w in POSITIVE for w in words) - sum(w in NEGATIVE for w in words)
    sentiment = "positive" if balance > 0 else "negative" if balance < 0 else "neutral"
    text = call.transcript().lower()
    met: list[bool | None] = []
    for criterion in call.spec.criteria:
        if criterion.intent is None and not criterion.phrases:
            met.append(None)
        else:
            met.append(
                (criterion.intent is not None and criterion.intent in intents)
                or any(p.lower() in text for p in criterion.phrases)
            )
    return {
        "summary": _summary(len(caller_lines), caller_intent, tools, outcome, call.end_reason),
        "analysis": {
            "outcome": outcome,
            "caller_intent": caller_intent,
            "sentiment": sentiment,
            "score": weighted_score(call.spec.criteria, met),
            "criteria": [
                {"name": c.name, "met": m, "weight": c.weight}
                for c, m in zip(call.spec.criteria, met, strict=True)
            ],
        },
        "analyser": "local",
    }


def _summary(
    caller_turns: int, intent: str | None, tools: list[str], outcome: str, end_reason: str
) -> str:
    if caller_turns == 0:
        first = "The caller did not speak."
    else:
        about = f" about {intent.replace('_', ' ')}" if intent else ""
        plural = "s" if caller_turns != 1 else ""
        first = f"The caller spoke {caller_turns} time{plural}{about}."
    used = f" Tools used: {', '.join(dict.fromkeys(t for t in tools if t))}." if any(tools) else ""
    return f"{first}{used} Outcome: {outcome} (ended: {end_reason})."
