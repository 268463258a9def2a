"""What a post-call analysis is asked for and what it answers.

An agent's optional ``analysis:`` key (agent YAML, see :mod:`.agents`) lists the
criteria a call is scored against::

    analysis:
      criteria:
        - name: booked
          description: The caller got an appointment.
          intent: book               # optional: met when the caller had this intent
          phrases: [booked, see you] # optional: met when one is said (any side)
          weight: 2                  # optional, > 0, default 1

The LLM analyser judges each criterion by its ``description``; the local one
only by ``intent`` / ``phrases`` (a criterion with neither is ``met: null``
offline and left out of the score).

The result, stored in ``call_logs.summary`` (JSON) and sent as ``data.summary``
of ``call.analyzed``::

    {"summary": str,
     "analysis": {"outcome": "completed" | "transferred" | "failed" | "no_conversation",
                  "caller_intent": str | null,
                  "sentiment": "positive" | "neutral" | "negative",
                  "score": float 0..1 | null,      # weighted share of criteria met
                  "criteria": [{"name": str, "met": bool | null, "weight": float}]},
     "analyser": "local" | "llm",
     "fallback": str}                               # only when the LLM failed: why

Errors: ``ValueError`` for an ``analysis:`` mapping that breaks these rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, final

__all__ = [
    "OUTCOMES",
    "SENTIMENTS",
    "AnalysisSpec",
    "CallFacts",
    "Criterion",
    "weighted_score",
]

OUTCOMES: Final = ("completed", "transferred", "failed", "no_conversation")
SENTIMENTS: Final = ("positive", "neutral", "negative")


@final
@dataclass(frozen=True)
class Criterion:
    """One thing a call is scored on."""

    name: str
    description: str
    intent: str | None = None
    phrases: tuple[str, ...] = ()
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a criterion needs a name")
        if not self.weight > 0:
            raise ValueError(f"criterion {self.name!r}: weight must be > 0")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.intent is not None:
            data["intent"] = self.intent
        if self.phrases:
            data["phrases"] = list(self.phrases)
        if self.weight != 1.0:
            data["weight"] = self.weight
        return data


@final
@dataclass(frozen=True)
class AnalysisSpec:
    """An agent's ``analysis:`` key (empty: no criteria, score null)."""

    criteria: tuple[Criterion, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise ValueError("analysis criteria must have distinct names")

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> AnalysisSpec:
        """From the YAML/JSON mapping; raises ValueError naming what is wrong."""
        if not data:
            return cls()
        unknown = set(data) - {"criteria"}
        if unknown:
            raise ValueError(f"analysis: unknown keys {sorted(unknown)}")
        raw = data.get("criteria") or []
        if not isinstance(raw, list):
            raise ValueError("analysis.criteria must be a list")
        criteria = []
        for item in raw:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise ValueError("each analysis criterion needs a name")
            extra = set(item) - {"name", "description", "intent", "phrases", "weight"}
            if extra:
                raise ValueError(f"criterion {item['name']!r}: unknown keys {sorted(extra)}")
            phrases = item.get("phrases") or []
            if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
                raise ValueError(f"criterion {item['name']!r}: phrases must be a list of text")
            weight = item.get("weight", 1)
            if not isinstance(weight, int | float) or isinstance(weight, bool):
                raise ValueError(f"criterion {item['name']!r}: weight must be a number")
            criteria.append(
                Criterion(
                    name=item["name"],
                    description=str(item.get("description") or ""),
                    intent=str(item["intent"]) if item.get("intent") else None,
                    phrases=tuple(phrases),
                    weight=float(weight),
                )
            )
        return cls(tuple(criteria))

    def to_json(self) -> dict[str, Any]:
        return {"criteria": [c.to_json() for c in self.criteria]}


@final
@dataclass(frozen=True)
class CallFacts:
    """What an analyser reads of one ended call.

    Args:
        end_reason: ``call_logs.end_reason``.
        turns: ``(role, text)`` in order, role ``caller`` or ``agent`` (``call_turns``).
        events: the call's events as :meth:`.store.Store.read_events` gives them.
        spec: the agent's criteria.
    """

    end_reason: str
    turns: tuple[tuple[str, str], ...]
    events: tuple[Mapping[str, Any], ...]
    spec: AnalysisSpec = AnalysisSpec()

    def transcript(self) -> str:
        """``Caller: ...`` / ``Agent: ...`` lines."""
        return "\n".join(f"{role.capitalize()}: {text}" for role, text in self.turns)


def weighted_score(criteria: Sequence[Criterion], met: Sequence[bool | None]) -> float | None:
    """Weighted share of the judged criteria that are met, rounded to 3 places;
    None when none could be judged."""
    judged = [(c.weight, m) for c, m in zip(criteria, met, strict=True) if m is not None]
    total = sum(w for w, _ in judged)
    if not total:
        return None
    return round(sum(w for w, m in judged if m) / total, 3)
