"""The worker's settings: ``WORKER_*`` environment variables and an optional env file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.settings import (
    blank_secret_is_unset,
    known_log_level,
    load_secret_files,
    long_enough_token,
)
from worker.constants import (
    DEFAULT_HIT_MAX_BYTES,
    DEFAULT_HIT_MAX_IN_FLIGHT,
    DEFAULT_HIT_TIMEOUT_SECONDS,
    DEFAULT_PORT,
    ENV_PREFIX,
    MAX_HIT_MAX_IN_FLIGHT,
)


class WorkerSettings(BaseSettings):
    """Everything the worker is told at start; built once, in ``main()``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    host: str = "0.0.0.0"
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    token: SecretStr | None = None
    token_file: Path | None = None
    hit_timeout_seconds: float = Field(default=DEFAULT_HIT_TIMEOUT_SECONDS, gt=0)
    hit_max_bytes: int = Field(default=DEFAULT_HIT_MAX_BYTES, gt=0)
    # GET /hit calls answered at once; beyond, 503 with Retry-After (see worker.hit_gate).
    hit_max_in_flight: int = Field(
        default=DEFAULT_HIT_MAX_IN_FLIGHT, ge=1, le=MAX_HIT_MAX_IN_FLIGHT
    )
    log_level: str = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        return load_secret_files(data, ["token"])

    @field_validator("token")
    @classmethod
    def _empty_token_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        """``WORKER_TOKEN=`` (empty) means no token, as an unset variable does; a token
        shorter than MIN_TOKEN_CHARS (16) is refused."""
        return long_enough_token(blank_secret_is_unset(value))

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        return known_log_level(value)
