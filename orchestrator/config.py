"""Settings: command-line flags over environment variables over defaults.

Environment variables (all optional):

- ``DATABASE_URL``: a PostgreSQL URL; without it the server starts an
  embedded PostgreSQL (pgserver) in the data folder.
- ``SWITCHBOARD_DATA_DIR``: the data folder (default
  ``$XDG_DATA_HOME/switchboard``, i.e. ``~/.local/share/switchboard``).
- ``PUBLIC_URL``: the URL Twilio reaches this server at (default
  ``http://HOST:PORT``); request signatures are checked against it, never
  against the Host header.
- ``TWILIO_AUTH_TOKEN``: checks ``X-Twilio-Signature``; without it a
  development token is generated and kept in the data folder.
- ``TWILIO_ACCOUNT_SID``: with the auth token, lets transfers redirect live
  calls through Twilio's REST API. ``TWILIO_API_BASE`` overrides its address.
- ``VOICE_RUNTIME_SIGNING_SECRETS``: the session-token keyring,
  ``kid=secret[,kid=secret]`` (at most two; the first signs, both verify; each
  secret at least 32 bytes). Without it the server is in development mode: it
  signs with a random secret made at start, and the practice page gets its
  sessions with the development API key.
- ``VOICE_RUNTIME_ISSUER``: the tokens' ``iss`` (default ``switchboard``).
- ``PLAYOUT_LEAD_MS``: how far ahead of real time agent audio is sent (300).
- ``SPEECH_WORKERS``: worker processes for the local provider's speech
  recognition and synthesis, per server process (default: the usable cores
  divided by ``--workers``, at least 1; started on first use, see
  :mod:`switchboard.actors.local.workers`).
- ``DB_POOL_SIZE``: the most PostgreSQL connections the whole server (all its
  processes) opens (20); see :meth:`Settings.database_pool_size`.
- ``LOG_FORMAT``: ``json`` (default) or ``console``; ``LOG_LEVEL`` (``info``).
- ``MAX_CALLS_PER_WORKER``: calls one worker process admits at once (100);
  beyond it calls are refused before they start (see :mod:`.admission`).
- ``MAX_LOCAL_CALLS_PER_WORKER``: of those, calls whose first provider is
  ``local`` (CPU-heavy speech recognition and synthesis); default
  ``max(1, 2 * usable cores // workers)``.
- ``DRAIN_TIMEOUT_S``: on SIGTERM (or Ctrl-C), the longest the server waits for its
  calls in flight to end before it stops anyway (default 120).
- ``DRAIN_GRACE_S``: behind a balancer, seconds between SIGTERM and the first refused
  call: ``/ready`` answers 503 at once but calls are still taken, so the balancer's
  health checks take the instance out before a call could be refused (default 0;
  Kubernetes' ``preStop`` hook does the same job, see ``deploy/``).
- ``SPOOL_DRAIN_INTERVAL_S``: seconds between two drains of the call journals
  left in ``DATA_DIR/spool`` (calls that ended while PostgreSQL was away, calls
  whose process died) back into PostgreSQL (default 30; see :mod:`.spool`).
- ``RECORDING_KEYS``: the keys that wrap recordings' data keys,
  ``kid=base64key[,kid=base64key...]`` (32-byte keys; the first wraps new
  recordings, all unwrap). Unset: a key made once in ``DATA_DIR/recording_keys``
  (mode 0600); see :mod:`.recording_keys`.
- ``RECORDING_STORE``: where sealed recordings go: unset, ``DATA_DIR/recordings``;
  an absolute folder; or ``s3://bucket/prefix`` (any S3-compatible store), with
  ``RECORDING_S3_ENDPOINT`` (unset: AWS S3), ``RECORDING_S3_REGION``
  (``us-east-1``), ``RECORDING_S3_PATH_STYLE`` (``true``/``false``; default: path
  style when an endpoint is set) and boto3's credentials (``AWS_ACCESS_KEY_ID``,
  ``AWS_SECRET_ACCESS_KEY``); see :mod:`.recording_store`.
- ``RECORDING_SWEEP_INTERVAL_S``: seconds between two sweeps that shred the
  recordings past their retention (default 3600; see :mod:`.recording_sweep`).
- Post-call hooks (:mod:`.post_call`): ``POST_CALL_ANALYSIS`` (``local``, the
  default; ``llm``, the cascaded mode's ``LLM_*`` endpoint, falling back to local;
  ``off``: no summary, webhooks still sent), ``WEBHOOK_MAX_ATTEMPTS`` (8, then the
  delivery is dead), ``WEBHOOK_RETRY_BASE_S`` (10) and ``WEBHOOK_RETRY_CAP_S``
  (3600): the backoff, ``WEBHOOK_TIMEOUT_S`` (10) per attempt,
  ``POST_CALL_POLL_S`` (1): how often the queue is looked at.
- ``ENGINE_API_KEY``: the admin key of the runtime configuration API
  (``/config``, ``/presets``; see :mod:`.config_routes`). Unset in development
  mode: one is made and kept in ``DATA_DIR/engine-api-key``; unset otherwise: the
  API answers 503.
- Provider URLs and keys (``OPENAI_API_KEY``, ``GEMINI_API_KEY``, ...): see
  :mod:`switchboard.actors.providers.endpoints`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from switchboard.actors.providers import Endpoints, unavailable_reason

from .agents import MODES, AgentSpec, webhook_url_problem
from .errors import ConfigError
from .recording_keys import Keyring as RecordingKeyring
from .recording_keys import parse_recording_keys
from .recording_store import parse_store_location
from .tokens import DEFAULT_ISSUER, Keyring

PARENT_POOL_SIZE = 2
"""Connections of the parent process under ``serve --workers N`` (N > 1)."""


def usable_cores() -> int:
    """The CPUs this process may run on (``sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_data_dir(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("SWITCHBOARD_DATA_DIR"):
        return Path(env["SWITCHBOARD_DATA_DIR"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "switchboard"


ANALYSERS: Final = ("local", "llm", "off")


@dataclass(frozen=True)
class PostCallSettings:
    """How calls are analysed and webhooks delivered (:mod:`.post_call`)."""

    analysis: str = "local"
    max_attempts: int = 8
    retry_base_s: float = 10.0
    retry_cap_s: float = 3600.0
    timeout_s: float = 10.0
    poll_s: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PostCallSettings:
        analysis = (env.get("POST_CALL_ANALYSIS") or cls.analysis).strip().lower()
        if analysis not in ANALYSERS:
            raise ConfigError(
                f"POST_CALL_ANALYSIS must be one of {', '.join(ANALYSERS)}, got {analysis!r}"
            )
        attempts = env.get("WEBHOOK_MAX_ATTEMPTS") or str(cls.max_attempts)
        if not attempts.isdigit() or int(attempts) < 1:
            raise ConfigError(f"WEBHOOK_MAX_ATTEMPTS must be a whole number >= 1, got {attempts!r}")

        def seconds(name: str, default: float) -> float:
            value = _positive_float(env, name)
            return default if value is None else value

        return cls(
            analysis=analysis,
            max_attempts=int(attempts),
            retry_base_s=seconds("WEBHOOK_RETRY_BASE_S", cls.retry_base_s),
            retry_cap_s=seconds("WEBHOOK_RETRY_CAP_S", cls.retry_cap_s),
            timeout_s=seconds("WEBHOOK_TIMEOUT_S", cls.timeout_s),
            poll_s=seconds("POST_CALL_POLL_S", cls.poll_s),
        )


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("switchboard-data")
    database_url: str | None = None
    public_url: str | None = None
    twilio_auth_token: str | None = None
    twilio_account_sid: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    playout_lead_ms: float = 300.0
    speech_workers: int | None = None
    log_format: str = "json"
    log_level: str = "info"
    endpoints: Endpoints = field(default_factory=Endpoints)
    demo_mode: str | None = None
    signing_secrets: str | None = None
    token_issuer: str = DEFAULT_ISSUER
    workers: int = 1
    """Worker processes (``serve --workers``); 1 runs everything in this process."""
    max_calls_per_worker: int = 100
    max_local_calls_per_worker: int | None = None
    """None: ``max(1, 2 * usable cores // workers)`` (see :attr:`local_calls_per_worker`)."""
    db_pool_size: int = 20
    """``DB_POOL_SIZE``: the server's PostgreSQL connections, all processes together."""
    drain_timeout_s: float = 120.0
    """``DRAIN_TIMEOUT_S``: the longest a drain waits for the calls in flight."""
    drain_grace_s: float = 0.0
    """``DRAIN_GRACE_S``: seconds a draining server is unready but still takes calls."""
    spool_drain_interval_s: float = 30.0
    """Seconds between two drains of the spool folder (``SPOOL_DRAIN_INTERVAL_S``)."""
    recording_keys: str | None = None
    """``RECORDING_KEYS``: ``kid=base64key,...`` (first encrypts, all decrypt); None: the
    data directory's ``recording_keys`` file (see :meth:`recording_keyring`)."""
    recording_store: str | None = None
    """``RECORDING_STORE``: None (``DATA_DIR/recordings``), a folder, or ``s3://bucket/prefix``."""
    recording_s3_endpoint: str | None = None
    recording_s3_region: str = "us-east-1"
    recording_s3_path_style: bool | None = None
    """None: path-style addressing when an endpoint is set."""
    recording_sweep_interval_s: float = 3600.0
    """Seconds between two retention sweeps (``RECORDING_SWEEP_INTERVAL_S``)."""
    post_call: PostCallSettings = field(default_factory=PostCallSettings)
    """``POST_CALL_ANALYSIS``, ``WEBHOOK_*``, ``POST_CALL_POLL_S``."""
    engine_api_key: str | None = None
    """``ENGINE_API_KEY``: the configuration API's admin key (see :mod:`.config_routes`)."""
    functions_base_url: str | None = None
    """``FUNCTIONS_BASE_URL``: where edge-function tools are (``{base}/{function}``; the
    Supabase convention ``https://PROJECT.supabase.co/functions/v1``); ``{tenant}`` in it
    is the call's tenant name. None: edge-function tools answer ``not_configured``."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, **overrides: Any) -> Settings:
        """Settings from ``env``, then ``overrides`` (flags; ``None`` values are ignored)."""
        try:
            lead = float(env.get("PLAYOUT_LEAD_MS", "300"))
        except ValueError:
            raise ConfigError(
                f"PLAYOUT_LEAD_MS must be a number of ms, got {env['PLAYOUT_LEAD_MS']!r}"
            ) from None
        workers = env.get("SPEECH_WORKERS") or None
        if workers is not None and (not workers.isdigit() or int(workers) < 1):
            raise ConfigError(f"SPEECH_WORKERS must be a whole number >= 1, got {workers!r}")
        drain_s = _positive_float(env, "SPOOL_DRAIN_INTERVAL_S")
        sweep_s = _positive_float(env, "RECORDING_SWEEP_INTERVAL_S")
        drain_timeout_s = _positive_float(env, "DRAIN_TIMEOUT_S")
        drain_grace_s = _positive_float(env, "DRAIN_GRACE_S")
        settings = cls(
            recording_store=env.get("RECORDING_STORE") or None,
            recording_s3_endpoint=env.get("RECORDING_S3_ENDPOINT") or None,
            recording_s3_region=env.get("RECORDING_S3_REGION") or cls.recording_s3_region,
            recording_s3_path_style=_optional_bool(env, "RECORDING_S3_PATH_STYLE"),
            recording_sweep_interval_s=(
                sweep_s if sweep_s is not None else cls.recording_sweep_interval_s
            ),
            spool_drain_interval_s=drain_s if drain_s is not None else cls.spool_drain_interval_s,
            drain_timeout_s=drain_timeout_s or cls.drain_timeout_s,
            drain_grace_s=drain_grace_s or cls.drain_grace_s,
            max_calls_per_worker=_positive_int(env, "MAX_CALLS_PER_WORKER") or 100,
            max_local_calls_per_worker=_positive_int(env, "MAX_LOCAL_CALLS_PER_WORKER"),
            db_pool_size=_positive_int(env, "DB_POOL_SIZE") or cls.db_pool_size,
            data_dir=default_data_dir(env),
            database_url=env.get("DATABASE_URL") or None,
            public_url=env.get("PUBLIC_URL") or None,
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or None,
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or None,
            twilio_api_base=env.get("TWILIO_API_BASE") or cls.twilio_api_base,
            playout_lead_ms=lead,
            speech_workers=int(workers) if workers is not None else None,
            log_format=env.get("LOG_FORMAT", "json"),
            log_level=env.get("LOG_LEVEL", "info"),
            endpoints=Endpoints.from_env(env),
            signing_secrets=env.get("VOICE_RUNTIME_SIGNING_SECRETS") or None,
            token_issuer=env.get("VOICE_RUNTIME_ISSUER") or DEFAULT_ISSUER,
            recording_keys=env.get("RECORDING_KEYS") or None,
            functions_base_url=env.get("FUNCTIONS_BASE_URL") or None,
            post_call=PostCallSettings.from_env(env),
            engine_api_key=env.get("ENGINE_API_KEY") or None,
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        if settings.log_format not in ("json", "console"):
            raise ConfigError(
                f"LOG_FORMAT must be 'json' or 'console', got {settings.log_format!r}"
            )
        if settings.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {settings.workers}")
        if settings.max_calls_per_worker < 1 or (settings.max_local_calls_per_worker or 1) < 1:
            raise ConfigError("the calls per worker must be at least 1")
        if settings.functions_base_url is not None:
            problem = webhook_url_problem(settings.functions_base_url.replace("{tenant}", "t"))
            if problem is not None:
                raise ConfigError(f"FUNCTIONS_BASE_URL: {problem}")
        parse_store_location(settings.recording_store)  # a wrong store: an error at start
        settings.keyring()  # a malformed keyring is an error at start, not at the first call
        if settings.recording_keys is not None:
            parse_recording_keys(settings.recording_keys)  # likewise RECORDING_KEYS
        if settings.demo_mode is not None:
            if settings.demo_mode not in MODES:
                raise ConfigError(
                    f"--mode must be one of {', '.join(MODES)}, got {settings.demo_mode!r}"
                )
            reason = unavailable_reason(settings.demo_mode, settings.endpoints)
            if reason is not None:
                raise ConfigError(f"--mode {settings.demo_mode}: {reason}")
        return settings

    def check_agent_modes(self, agent: AgentSpec) -> None:
        """Raise ConfigError naming every mode of ``agent``'s chain that cannot run here."""
        problems = [
            reason
            for mode in dict.fromkeys((agent.mode, *agent.fallback))
            if (reason := unavailable_reason(mode, self.endpoints)) is not None
        ]
        if problems:
            raise ConfigError(
                f"agent {agent.name!r}: "
                + "; ".join(problems)
                + ". Set the variables, or remove the mode from `mode`/`fallback`."
            )

    @property
    def local_calls_per_worker(self) -> int:
        """The capacity of one worker for calls whose first provider is ``local``."""
        if self.max_local_calls_per_worker is not None:
            return self.max_local_calls_per_worker
        return max(1, 2 * usable_cores() // self.workers)

    @property
    def speech_workers_per_process(self) -> int:
        """Speech worker processes of one server process: ``SPEECH_WORKERS``, else its
        share of the usable cores (``max(1, cores // workers)``)."""
        if self.speech_workers is not None:
            return self.speech_workers
        return max(1, usable_cores() // self.workers)

    def database_pool_size(self, *, parent: bool) -> int:
        """The most connections one process's pool opens, so that the server as a whole
        stays within :attr:`db_pool_size` (``DB_POOL_SIZE``).

        With ``--workers 1`` the one process (the parent) has them all. Otherwise
        the parent (start-up, then the spool drain, one query at a time) has
        :data:`PARENT_POOL_SIZE` and each worker an equal share of the rest, at
        least 2 (so past ``(DB_POOL_SIZE - 2) / 2`` workers the server may open
        ``2 + 2 * workers``, more than the setting).
        """
        if self.workers == 1:
            return self.db_pool_size
        if parent:
            return PARENT_POOL_SIZE
        return max(2, (self.db_pool_size - PARENT_POOL_SIZE) // self.workers)

    @property
    def dev_mode(self) -> bool:
        """No signing secrets configured: tokens are signed with a secret made at start."""
        return self.signing_secrets is None

    def keyring(self) -> Keyring:
        """The configured keyring, or (development mode) a new random one.

        Raises:
            ConfigError: ``VOICE_RUNTIME_SIGNING_SECRETS`` is malformed.
        """
        if self.signing_secrets is None:
            return Keyring.generate()
        return Keyring.parse(self.signing_secrets)

    def recording_keyring(self, *, create: bool = True) -> RecordingKeyring:
        """The keys that wrap recordings' data keys: ``RECORDING_KEYS``, else the key file
        ``data_dir/recording_keys`` (made once, mode 0600, unless ``create`` is False).

        Raises:
            ConfigError: ``RECORDING_KEYS`` or the key file is malformed, or missing
                with ``create`` False.
        """
        return RecordingKeyring.for_server(self.recording_keys, self.data_dir, create=create)

    @property
    def base_url(self) -> str:
        """The public HTTP(S) URL, without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def websocket_base_url(self) -> str:
        """``base_url`` with http(s) turned into ws(s)."""
        url = self.base_url
        if url.startswith("https://"):
            return "wss://" + url.removeprefix("https://")
        return "ws://" + url.removeprefix("http://")


def _positive_int(env: Mapping[str, str], name: str) -> int | None:
    """``env[name]`` as a whole number >= 1, or None if unset.

    Raises:
        ConfigError: set, but not a whole number >= 1.
    """
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number of calls, at least 1, got {raw!r}")
    return value


def _positive_float(env: Mapping[str, str], name: str) -> float | None:
    """``env[name]`` as a finite number > 0, or None if unset.

    Raises:
        ConfigError: set, but not a finite number > 0.
    """
    raw = env.get(name)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise ConfigError(f"{name} must be a number of seconds above 0, got {raw!r}")
    return value


def _optional_bool(env: Mapping[str, str], name: str) -> bool | None:
    """``env[name]`` as ``true``/``false`` (also ``1``/``0``, ``yes``/``no``), or None if unset.

    Raises:
        ConfigError: set to anything else.
    """
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return None
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} must be true or false, got {env[name]!r}")
