"""The runtime configuration: what new calls run on, changeable without a restart.

Fields (:data:`FIELDS`): ``chain``, the fallback chain the runtime puts first in
every call's chain (see :mod:`.call_chain`; a list of provider modes), and the
providers' endpoints, models and keys (the variables of
:mod:`switchboard.actors.providers.endpoints`: ``openai_realtime_url``,
``openai_api_key``, ``gemini_live_url``, ...).

Layers, the first that sets a field wins (the seed's hierarchy):

1. ``api``: set by ``PUT /config``, kept in PostgreSQL (every worker and every
   instance applies it; :mod:`.config_store`);
2. ``file``: ``DATA_DIR/config.yaml``, a mapping of the same fields, read again
   when it changes (:mod:`.live_config`);
3. ``env``: the environment variables at start (``OPENAI_API_KEY``, ...;
   ``serve --mode MODE`` is the ``chain`` [MODE]);
4. ``default``.

Secrets (the ``*_api_key`` fields) are never shown: :meth:`Effective.public` gives
``{"set": true|false, "source": ...}`` in their place. Errors are per field
(:func:`validate`), so an API client can show each next to its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from switchboard.actors.providers import Endpoints

from .agents import MODES

Source = Literal["api", "file", "env", "default"]
LAYERS: Final[tuple[Source, ...]] = ("api", "file", "env", "default")


@dataclass(frozen=True)
class Field:
    """One setting: its kind and the environment variable of its ``env`` layer."""

    kind: Literal["chain", "url", "text", "secret"]
    env: str | None


_DEFAULTS: Final = Endpoints()
FIELDS: Final[dict[str, Field]] = {
    "chain": Field("chain", None),
    "openai_realtime_url": Field("url", "OPENAI_REALTIME_URL"),
    "openai_api_key": Field("secret", "OPENAI_API_KEY"),
    "gemini_live_url": Field("url", "GEMINI_LIVE_URL"),
    "gemini_api_key": Field("secret", "GEMINI_API_KEY"),
    "stt_url": Field("url", "STT_URL"),
    "stt_api_key": Field("secret", "STT_API_KEY"),
    "llm_base_url": Field("url", "LLM_BASE_URL"),
    "llm_api_key": Field("secret", "LLM_API_KEY"),
    "llm_model": Field("text", "LLM_MODEL"),
    "tts_base_url": Field("url", "TTS_BASE_URL"),
    "tts_api_key": Field("secret", "TTS_API_KEY"),
    "tts_model": Field("text", "TTS_MODEL"),
    "tts_voice": Field("text", "TTS_VOICE"),
}
"""Every field; each but ``chain`` is the :class:`Endpoints` attribute of that name."""
MAX_TEXT: Final = 2000


def validate(values: Any) -> dict[str, str]:
    """The problems of ``values`` (a partial configuration, as ``PUT /config`` sends or
    the file holds) by field; empty: valid. ``None`` clears a field of this layer."""
    if not isinstance(values, Mapping):
        return {"": "expected a JSON object (a YAML mapping) of fields"}
    problems: dict[str, str] = {}
    for name, value in values.items():
        spec = FIELDS.get(name) if isinstance(name, str) else None
        if spec is None:
            problems[str(name)] = f"unknown field; the fields are {', '.join(FIELDS)}"
        elif value is not None:
            problem = _problem(spec, value)
            if problem is not None:
                problems[name] = problem
    return problems


def _problem(spec: Field, value: Any) -> str | None:
    if spec.kind == "chain":
        if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
            return "expected a list of provider modes"
        unknown = [m for m in value if m not in MODES]
        if unknown:
            return f"unknown mode {unknown[0]!r}; the modes are {', '.join(MODES)}"
        return "each mode at most once" if len(set(value)) != len(value) else None
    if not isinstance(value, str) or not value.strip():
        return "expected a non-empty string"
    if len(value) > MAX_TEXT:
        return f"at most {MAX_TEXT} characters"
    if spec.kind == "url":
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
            return "expected an http(s):// or ws(s):// URL"
    return None


@dataclass(frozen=True)
class Effective:
    """Each field's value and the layer it came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, Source]

    @property
    def chain(self) -> tuple[str, ...] | None:
        """The configured chain, or None when no layer sets one."""
        chain = self.values.get("chain")
        return tuple(chain) if chain else None

    def endpoints(self) -> Endpoints:
        """The providers' endpoints and keys for new calls."""
        names = {f.name for f in fields(Endpoints)}
        given = {k: v for k, v in self.values.items() if k in names and v is not None}
        return replace(_DEFAULTS, **given)

    def public(self) -> dict[str, dict[str, Any]]:
        """``GET /config``'s body: ``{field: {"value": ..., "source": ...}}``; a secret is
        ``{"set": bool, "source": ...}``, its value never."""
        body: dict[str, dict[str, Any]] = {}
        for name, spec in FIELDS.items():
            value, source = self.values.get(name), self.sources[name]
            if spec.kind == "secret":
                body[name] = {"set": value is not None, "source": source}
            else:
                body[name] = {"value": list(value) if name == "chain" and value else value}
                body[name]["source"] = source
        return body


def env_layer(endpoints: Endpoints, demo_mode: str | None = None) -> dict[str, Any]:
    """The ``env`` layer: what the settings at start give (the environment, read by
    :meth:`Endpoints.from_env`, or a program's own :class:`Endpoints`), each field that
    differs from the default; ``serve --mode`` sets the chain."""
    layer: dict[str, Any] = {
        name: getattr(endpoints, name)
        for name in FIELDS
        if name != "chain" and getattr(endpoints, name) != getattr(_DEFAULTS, name)
    }
    if demo_mode is not None:
        layer["chain"] = [demo_mode]
    return layer


def effective(layers: Mapping[Source, Mapping[str, Any]]) -> Effective:
    """Each field from the first layer that sets it (``None`` in a layer: not set)."""
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    for name in FIELDS:
        for layer in LAYERS:
            if layer == "default":
                values[name] = None if name == "chain" else getattr(_DEFAULTS, name)
                sources[name] = "default"
                break
            value = layers.get(layer, {}).get(name)
            if value is not None:
                values[name], sources[name] = value, layer
                break
    return Effective(values, sources)


PRESETS: Final[dict[str, dict[str, Any]]] = {
    "openai-realtime": {"chain": ["openai-realtime"]},
    "gemini-live": {"chain": ["gemini-live"]},
    "cascaded-groq-deepgram": {
        "chain": ["cascaded"],
        "stt_url": "wss://api.deepgram.com/v1/listen",
        "llm_base_url": "https://api.groq.com/openai/v1",
        "llm_model": "llama-3.3-70b-versatile",
        "tts_base_url": "https://api.deepgram.com/v1",
        "tts_model": "aura-2-thalia-en",
    },
    "local": {"chain": ["local"]},
}
"""``GET /presets``: named bundles of fields (no keys: those are the deployment's).
``PUT /config`` with ``{"preset": NAME, ...}`` applies one, the other fields over it."""
