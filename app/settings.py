"""Settings of the ranking service, read from `WATCHTIME_*` environment variables."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.errors import SettingsError
from app.resources import default_intra_op_threads

ENV_PREFIX = "WATCHTIME_"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

DEFAULT_RANKING_THREADS = 2
"""Rankings per worker at once: one runs Python while another runs onnxruntime."""

logger = logging.getLogger(__name__)


class Settings(BaseSettings):
    """Configuration of one service process, set by `WATCHTIME_*` variables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        use_attribute_docstrings=True,
        validate_default=True,
        frozen=True,
    )

    model_repository: Path = Path("models")
    """Directory that contains `<model name>/<version>/` directories."""

    model_name: str | None = Field(default=None, min_length=1)
    """Model to serve. The default is the only model in the repository."""

    model_version: int | None = Field(default=None, ge=1)
    """Version to serve. The default is the highest integer version directory."""

    host: str = Field(default="127.0.0.1", min_length=1)
    """Address that the HTTP server binds to."""

    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port that the HTTP server listens on."""

    workers: int = Field(default=1, ge=1)
    """Number of server processes, each with its own copy of the model."""

    max_candidates: int = Field(default=5000, ge=1)
    """Maximum number of candidates in one ranking request."""

    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    """Maximum request body in bytes; longer bodies get 413 before being read."""

    max_id_list_length: int = Field(default=1000, ge=1)
    """Maximum number of ids in one id-list feature value."""

    strict_features: bool = False
    """Reject feature names the model does not read, instead of ignoring them."""

    request_deadline_ms: float = Field(default=1000.0, gt=0, le=600_000)
    """Time from arrival within which a ranking must finish, unless a header sets it."""

    max_in_flight: int = Field(default=64, ge=1)
    """Maximum number of ranking requests admitted at once per worker."""

    ranking_threads: int | None = Field(default=None, ge=1)
    """Rankings run at once per worker; unset = 2, or max_in_flight with batching."""

    shutdown_timeout_s: int = Field(default=20, ge=0)
    """Seconds a stopping worker waits for requests in flight before cancelling them."""

    intra_op_threads: int | None = Field(default=None, ge=0)
    """onnxruntime threads per worker: unset = cores / workers, 0 = onnxruntime's."""

    onnxruntime_spinning: bool = False
    """Let idle intra-op threads spin for the next call: more CPU, less latency."""

    malloc_trim_interval_s: float = Field(default=10.0, ge=0)
    """Seconds between returns of free heap pages to the kernel; 0 turns it off."""

    gc_freeze: bool = True
    """Exclude the objects alive after start-up from full garbage collections."""

    batching: bool = False
    """Merge concurrent requests into shared onnxruntime calls."""

    batch_max_rows: int = Field(default=4096, ge=1)
    """Maximum candidate rows per onnxruntime call; larger requests are split."""

    batch_max_delay_ms: float = Field(default=1.0, ge=0, le=1000)
    """Longest time a request waits for others to share its onnxruntime call."""

    def resolved_ranking_threads(self) -> int:
        """Return the rankings run at once per worker, deriving the default.

        With batching, every admitted request needs a thread of its own to
        wait in, because the batcher merges requests that wait together.
        """
        if self.ranking_threads is not None:
            return self.ranking_threads
        return self.max_in_flight if self.batching else DEFAULT_RANKING_THREADS

    def resolved_intra_op_threads(self) -> int:
        """Return the thread count to use, deriving the default from the cgroup."""
        if self.intra_op_threads is not None:
            return self.intra_op_threads
        return default_intra_op_threads(self.workers)

    log_level: str = "info"
    """Level of the service and server logs, one of LOG_LEVELS in any case."""

    log_format: Literal["text", "json"] = "text"
    """Log record format: plain `text` lines or one JSON object per line."""

    reload_interval_s: float = Field(default=10.0, ge=0)
    """Seconds between checks of the model repository for a new version; 0 = off."""

    admin_token: SecretStr | None = Field(default=None, min_length=16)
    """Bearer token of the admin endpoints, at least 16 characters; unset = off."""

    runtime_dir: Path | None = None
    """Directory the workers of one server share; `watchtime serve` makes one."""

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
        return value.lower()


def env_name(field_name: str) -> str:
    """Return the environment variable that sets a settings field."""
    return ENV_PREFIX + field_name.upper()


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment and the given overrides.

    Overrides whose value is None are left out, so command line options that
    were not given keep the environment's value. Raises SettingsError with
    one line per invalid value, naming the variable or option, the value and
    what is allowed.
    """
    explicit = {name: value for name, value in overrides.items() if value is not None}
    _warn_about_unknown_variables()

    try:
        return Settings(**explicit)
    except ValidationError as error:
        lines = [_describe_error(detail, explicit) for detail in error.errors()]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


def _describe_error(detail: Any, overrides: dict[str, Any]) -> str:
    field_name = str(detail["loc"][0]) if detail["loc"] else "settings"
    source = env_name(field_name)
    if field_name in overrides:
        source = "--" + field_name.replace("_", "-")
    return f"{source}={detail['input']!r} is invalid: {detail['msg']}"


def _warn_about_unknown_variables() -> None:
    known = {env_name(name) for name in Settings.model_fields}
    unknown = sorted(
        name
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )
    if unknown:
        logger.warning(
            "ignoring unknown variables %s, the known ones are %s",
            unknown,
            sorted(known),
        )
