"""The example receptionist's FAQ questions are recognized by the local provider, and
adding them costs the intents nothing (PocketSphinx on the phone path, 8 kHz G.711).

Measured with these lines (eSpeak NG, 150 words a minute), the required log-odds
(asr.py) of the nine questions range from -104 to +29 against the raised bonus
of +47.2, the intent lines keep theirs (within 3 nats of the values without
knowledge), and the recordings that ask for nothing stay above it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
from test_local_asr import LINES, RECORDED, espeak, recorded

from switchboard.actors.local.asr import DEFAULT_PRIOR_LOG_ODDS, Recognizer
from switchboard.actors.local.assets import LANGUAGE_WEIGHT, agent_grammar
from switchboard.actors.local.policy import KNOWLEDGE_INTENT_PREFIX, knowledge_intents
from switchboard.orchestrator.agent_file import load_agent_file

AGENT = load_agent_file(Path(__file__).resolve().parent.parent / "examples" / "receptionist.yaml")
QUESTIONS = sorted(q for (q,) in knowledge_intents(AGENT).values())


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(agent_grammar(AGENT))


def test_each_intent_phrase_keeps_its_prior_when_questions_are_added() -> None:
    """H1's bonus less the uniform prior's cost, per phrase, is the same with or without
    the questions: a phrase is exactly as likely a priori as before."""
    bare = agent_grammar(replace(AGENT, knowledge=()))
    full = agent_grammar(AGENT)
    intent_phrases = sum(len(i.phrases) for i in AGENT.intents)
    assert bare.prior_log_odds == DEFAULT_PRIOR_LOG_ODDS
    assert len(full.intents) == len(bare.intents) + len(QUESTIONS) == len(AGENT.intents) + 9

    def per_phrase(bonus: float, phrases: int) -> float:
        return bonus - LANGUAGE_WEIGHT * math.log(phrases)

    assert per_phrase(full.prior_log_odds, intent_phrases + len(QUESTIONS)) == pytest.approx(
        per_phrase(bare.prior_log_odds, intent_phrases)
    )


@pytest.mark.parametrize("question", QUESTIONS)
def test_the_faq_questions_are_recognized_on_a_phone_line(
    recognizer: Recognizer, question: str
) -> None:
    heard = recognizer.recognize(espeak(question, 150), 8000)
    assert heard.intent == KNOWLEDGE_INTENT_PREFIX + question, heard


@pytest.mark.parametrize(("text", "intent"), sorted(LINES.items()))
def test_the_intent_lines_keep_their_intent(recognizer: Recognizer, text: str, intent: str) -> None:
    heard = recognizer.recognize(espeak(text, 150), 8000)
    assert heard.intent == intent, heard


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_real_speech_that_asks_for_nothing_is_still_no_question(
    recognizer: Recognizer, name: str
) -> None:
    heard = recognizer.recognize(recorded(name), 8000)
    assert heard.intent is None, heard
