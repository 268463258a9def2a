"""The runtime configuration API, behind the engine's admin key.

``Authorization: Bearer <ENGINE_API_KEY>`` (never a tenant's API key: the engine's
configuration is the operator's, not a tenant's); 401 without it or with another,
503 when the server has no admin key (``ENGINE_API_KEY`` unset outside development
mode, where a key is made and kept in ``DATA_DIR/engine-api-key``).

- ``GET /config``: ``{"config": {field: {"value" | "set", "source"}}, "api_version": N,
  "file": {"path": ..., "error": ... | null}}`` (:meth:`.runtime_config.Effective.public`:
  secrets only say whether they are set).
- ``PUT /config``: a partial configuration (``{field: value}``; ``null`` clears the
  field from the API layer; ``"preset": NAME`` applies a preset's fields, the others
  over it). Validated first: 422 ``{"error", "fields": {field: problem}}`` and
  nothing changes; else stored in PostgreSQL and applied to new calls at once (every
  worker within about a second); the answer is ``GET /config``'s.
- ``POST /config/validate``: the same checks, nothing applied: 200 ``{"valid": true}``
  or the 422.
- ``POST /config/reload``: read ``DATA_DIR/config.yaml`` now; 422 with the problem
  if it cannot be used (the last good file stays in force), else ``GET /config``'s.
- ``GET /presets``: ``{"presets": {name: fields}}`` (:data:`.runtime_config.PRESETS`).
"""

from __future__ import annotations

import hmac
from typing import Any

import structlog
import trio
from quart import jsonify, request
from quart_trio import QuartTrio

from .config_store import file_path
from .errors import StorageError
from .live_config import LiveConfig
from .outage import OUTAGE_REASON, RETRY_AFTER_DATABASE_S
from .runtime import Runtime
from .runtime_config import PRESETS, validate

log = structlog.get_logger("switchboard.config")

__all__ = ["register_config_routes"]


def register_config_routes(app: QuartTrio, rt: Runtime) -> None:
    """Add the configuration routes to ``app`` (see the module docstring)."""

    def refusal() -> Any | None:
        if rt.live_config is None or rt.engine_api_key is None:
            return jsonify(
                {"error": "no admin key: set ENGINE_API_KEY to use the configuration API"}
            ), 503
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), rt.engine_api_key.encode()
        ):
            log.warning("auth.rejected", door="config", reason="missing or wrong admin key")
            headers = {"WWW-Authenticate": 'Bearer realm="switchboard-config"'}
            return jsonify({"error": "the engine's admin key is required (Bearer)"}), 401, headers
        return None

    def live() -> LiveConfig:
        assert rt.live_config is not None
        return rt.live_config

    def body_of(config: LiveConfig) -> dict[str, Any]:
        return {
            "config": config.current.public(),
            "api_version": config.api_version,
            "file": {"path": str(file_path(config.data_dir)), "error": config.file_error},
        }

    async def changes() -> tuple[dict[str, Any] | None, Any | None]:
        """The request's fields (a preset's first), or the 400/422 answer."""
        data = await request.get_json(force=True, silent=True)
        if not isinstance(data, dict):
            return None, (jsonify({"error": "expected a JSON object of fields"}), 400)
        fields = dict(data)
        preset = fields.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                problem = f"unknown preset; the presets are {', '.join(PRESETS)}"
                return None, (
                    jsonify({"error": "invalid configuration", "fields": {"preset": problem}}),
                    422,
                )
            fields = {**PRESETS[preset], **fields}
        problems = validate(fields)
        if problems:
            return None, (jsonify({"error": "invalid configuration", "fields": problems}), 422)
        return fields, None

    def away(exc: StorageError) -> Any:
        log.warning("config.unavailable", error=str(exc)[:300])
        headers = {"Retry-After": str(RETRY_AFTER_DATABASE_S)}
        return jsonify({"error": OUTAGE_REASON}), 503, headers

    @app.get("/config")
    async def get_config() -> Any:
        return refusal() or jsonify(body_of(live()))

    @app.put("/config")
    async def put_config() -> Any:
        refused = refusal()
        if refused is not None:
            return refused
        fields, answer = await changes()
        if fields is None:
            return answer
        config = live()
        try:
            version = await trio.to_thread.run_sync(config.put, fields)
        except StorageError as exc:
            return away(exc)
        log.info("config.put", fields=sorted(fields), api_version=version)
        return jsonify(body_of(config))

    @app.post("/config/validate")
    async def validate_config() -> Any:
        refused = refusal()
        if refused is not None:
            return refused
        fields, answer = await changes()
        return answer if fields is None else jsonify({"valid": True})

    @app.post("/config/reload")
    async def reload_config() -> Any:
        refused = refusal()
        if refused is not None:
            return refused
        config = live()
        problem = await trio.to_thread.run_sync(config.reload_file)
        if problem is not None:
            return jsonify({"error": problem, "file": str(file_path(config.data_dir))}), 422
        return jsonify(body_of(config))

    @app.get("/presets")
    async def presets() -> Any:
        return refusal() or jsonify({"presets": PRESETS})
