"""The runtime configuration's rules without a server: layers, sources, checks, secrets."""

from __future__ import annotations

import json

import pytest

from switchboard.actors.providers import Endpoints
from switchboard.orchestrator.runtime_config import (
    FIELDS,
    PRESETS,
    effective,
    env_layer,
    validate,
)


def test_the_first_layer_that_sets_a_field_wins_and_says_so() -> None:
    given = Endpoints.from_env({"LLM_MODEL": "env-model", "OPENAI_API_KEY": "sk-env"})
    env = env_layer(given, demo_mode="local")
    config = effective(
        {
            "api": {"llm_model": "api-model"},
            "file": {"llm_model": "file-model", "tts_voice": "x"},
            "env": env,
        }
    )
    assert (config.values["llm_model"], config.sources["llm_model"]) == ("api-model", "api")
    assert (config.values["tts_voice"], config.sources["tts_voice"]) == ("x", "file")
    assert (config.values["openai_api_key"], config.sources["openai_api_key"]) == ("sk-env", "env")
    assert config.chain == ("local",) and config.sources["chain"] == "env"  # serve --mode
    assert config.sources["gemini_live_url"] == "default"
    assert config.endpoints().llm_model == "api-model"
    assert config.endpoints().openai_api_key == "sk-env"


def test_no_layer_no_chain_and_the_endpoints_defaults() -> None:
    config = effective({})
    assert config.chain is None and set(config.sources.values()) == {"default"}
    assert config.endpoints().openai_api_key is None


def test_secrets_are_never_shown_only_whether_they_are_set() -> None:
    config = effective({"api": {"llm_api_key": "sk-secret-1"}, "env": {"stt_api_key": "dg-2"}})
    shown = config.public()
    assert shown["llm_api_key"] == {"set": True, "source": "api"}
    assert shown["stt_api_key"] == {"set": True, "source": "env"}
    assert shown["tts_api_key"] == {"set": False, "source": "default"}
    text = json.dumps(shown)
    assert "sk-secret-1" not in text and "dg-2" not in text
    assert set(shown) == set(FIELDS)


def test_deepgrams_own_variable_sets_the_stt_key() -> None:
    assert env_layer(Endpoints.from_env({"DEEPGRAM_API_KEY": "dg"}))["stt_api_key"] == "dg"
    assert env_layer(Endpoints.from_env({})) == {}


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"chain": "local"}, "chain", "list of provider modes"),
        ({"chain": ["local", "local"]}, "chain", "at most once"),
        ({"chain": ["gpt-9"]}, "chain", "unknown mode 'gpt-9'"),
        ({"llm_base_url": "ftp://x"}, "llm_base_url", "URL"),
        ({"llm_model": ""}, "llm_model", "non-empty"),
        ({"llm_model": "x" * 2001}, "llm_model", "2000"),
        ({"tts_voice": 7}, "tts_voice", "string"),
        ({"volume": 11}, "volume", "unknown field"),
    ],
)
def test_each_bad_field_is_named_with_its_problem(
    values: dict[str, object], field: str, words: str
) -> None:
    problems = validate(values)
    assert list(problems) == [field] and words in problems[field]


def test_good_values_nulls_and_every_preset_are_valid() -> None:
    assert validate({"chain": ["gemini-live", "local"], "llm_api_key": None}) == {}
    assert validate(["not", "a", "mapping"]) == {
        "": "expected a JSON object (a YAML mapping) of fields"
    }
    for name, preset in PRESETS.items():
        assert validate(preset) == {}, name
