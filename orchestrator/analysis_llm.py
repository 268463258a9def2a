"""The LLM post-call analyser: any OpenAI-compatible chat completions endpoint.

It uses the cascaded mode's LLM settings (``LLM_BASE_URL``, ``LLM_API_KEY``,
``LLM_MODEL``; :class:`~switchboard.actors.providers.endpoints.Endpoints`):
one ``POST {base}/chat/completions`` (not streamed) with
``response_format: {"type": "json_object"}`` (OpenAI API reference, "Create
chat completion"), asking for the :mod:`.analysis_spec` fields as JSON. The
answer's ``choices[0].message.content`` is parsed and checked.

If the request fails (network, timeout, non-2xx) or the answer is not the JSON
asked for, the result is the local analysis (:mod:`.analysis_local`) with
``"fallback"`` saying why: the analysis never fails for the LLM's sake.
"""

from __future__ import annotations

import json
from typing import Any, Final

import httpx

from .analysis_local import analyse_locally
from .analysis_spec import OUTCOMES, SENTIMENTS, CallFacts, weighted_score

__all__ = ["LlmAnswerError", "analyse_with_llm", "prompt"]

MAX_TRANSCRIPT_CHARS: Final = 24_000


class LlmAnswerError(ValueError):
    """The LLM answered, but not the JSON asked for."""


def prompt(call: CallFacts) -> list[dict[str, str]]:
    """The chat messages: a system message with the JSON shape, a user message with the call."""
    criteria = (
        "\n".join(f"- {c.name}: {c.description or c.name}" for c in call.spec.criteria) or "(none)"
    )
    system = (
        "You analyse a finished phone call between a caller and an AI agent. Answer with one"
        ' JSON object: {"summary": "<two sentences>", "outcome": one of '
        f"{list(OUTCOMES)}, "
        '"caller_intent": "<short snake_case intent or null>", "sentiment": one of '
        f"{list(SENTIMENTS)}, "
        '"criteria": {"<criterion name>": true or false}}, judging each criterion below.'
    )
    user = f"Criteria:\n{criteria}\n\nCall ended because: {call.end_reason}\n\nTranscript:\n" + (
        call.transcript()[-MAX_TRANSCRIPT_CHARS:] or "(nobody spoke)"
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _checked(call: CallFacts, content: str) -> dict[str, Any]:
    try:
        answer = json.loads(content)
    except ValueError as exc:
        raise LlmAnswerError(f"the answer is not JSON: {exc}") from exc
    if not isinstance(answer, dict):
        raise LlmAnswerError("the answer is not a JSON object")
    summary, outcome = answer.get("summary"), answer.get("outcome")
    sentiment, intent = answer.get("sentiment"), answer.get("caller_intent")
    judged = answer.get("criteria") or {}
    if not isinstance(summary, str) or not summary.strip():
        raise LlmAnswerError("no summary")
    if outcome not in OUTCOMES:
        raise LlmAnswerError(f"outcome {outcome!r} is not one of {OUTCOMES}")
    if sentiment not in SENTIMENTS:
        raise LlmAnswerError(f"sentiment {sentiment!r} is not one of {SENTIMENTS}")
    if intent is not None and not isinstance(intent, str):
        raise LlmAnswerError("caller_intent is not text")
    if not isinstance(judged, dict):
        raise LlmAnswerError("criteria is not an object")
    met: list[bool | None] = [
        v if isinstance(v := judged.get(c.name), bool) else None for c in call.spec.criteria
    ]
    return {
        "summary": summary.strip(),
        "analysis": {
            "outcome": outcome,
            "caller_intent": intent or None,
            "sentiment": sentiment,
            "score": weighted_score(call.spec.criteria, met),
            "criteria": [
                {"name": c.name, "met": m, "weight": c.weight}
                for c, m in zip(call.spec.criteria, met, strict=True)
            ],
        },
        "analyser": "llm",
    }


async def analyse_with_llm(
    call: CallFacts,
    http: httpx.AsyncClient,
    *,
    base_url: str,
    api_key: str | None,
    model: str,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """The LLM's analysis of ``call``, or the local one with ``fallback`` (why) if it failed."""
    body = {
        "model": model,
        "messages": prompt(call),
        "response_format": {"type": "json_object"},
        "temperature": 0,
    }
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = base_url.rstrip("/") + "/chat/completions"
    try:
        response = await http.post(url, json=body, headers=headers, timeout=timeout_s)
        if not response.is_success:
            raise LlmAnswerError(f"HTTP {response.status_code}")
        content = response.json()["choices"][0]["message"]["content"]
        if not isinstance(content, str):
            raise LlmAnswerError("choices[0].message.content is not text")
        return _checked(call, content)
    except (httpx.HTTPError, LlmAnswerError, ValueError, KeyError, IndexError, TypeError) as exc:
        local = analyse_locally(call)
        local["fallback"] = f"the LLM analysis failed ({type(exc).__name__}: {exc}"[:300] + ")"
        return local
