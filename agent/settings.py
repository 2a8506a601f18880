"""The agent's settings: ``AGENT_*`` environment variables and an optional env file."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.constants import (
    DEFAULT_BACKOFF_BASE_SECONDS,
    DEFAULT_BACKOFF_MAX_SECONDS,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    DEFAULT_STATE_DIR,
    DEFAULT_STATUS_HOST,
    DEFAULT_STATUS_PORT,
    DEFAULT_WORKER_URL,
    ENV_PREFIX,
)
from common.event_loop import DEFAULT_EVENT_LOOP, EventLoopName, event_loop_name
from common.models import HttpUrlText
from common.settings import (
    blank_secret_is_unset,
    known_log_level,
    load_secret_files,
    long_enough_token,
)

_SECRETS = ("registration_token", "worker_token", "redis_url")


class AgentSettings(BaseSettings):
    """Everything the agent is told at start; built once, in ``main()``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    controller_url: HttpUrlText
    registration_token: SecretStr = Field(min_length=1)
    registration_token_file: Path | None = None
    worker_url: HttpUrlText = DEFAULT_WORKER_URL
    worker_token: SecretStr | None = None
    worker_token_file: Path | None = None
    state_dir: Path = DEFAULT_STATE_DIR
    # Where to hear change hints; unset: where the controller said at registration. A
    # Redis URL may carry a password.
    redis_url: SecretStr | None = None
    redis_url_file: Path | None = None
    backoff_base_seconds: float = Field(default=DEFAULT_BACKOFF_BASE_SECONDS, gt=0)
    backoff_max_seconds: float = Field(default=DEFAULT_BACKOFF_MAX_SECONDS, gt=0)
    hostname: str = Field(default_factory=socket.gethostname, min_length=1)
    labels: dict[str, str] = Field(default_factory=dict)
    request_timeout_seconds: float = Field(default=DEFAULT_REQUEST_TIMEOUT_SECONDS, gt=0)
    # Ask the controller to hold each poll until a change (Prefer: wait, long polling):
    # a change arrives on a connection already open, and the next poll confirms it.
    # false: plain polls every interval, cut short by hints.
    long_poll: bool = True
    # Keep a watch stream open (GET /config/watch, a WebSocket): a change arrives as one
    # frame and its confirmation goes back as one. false, or a controller that does not
    # serve it: polls, held as AGENT_LONG_POLL says.
    watch: bool = True
    # The status server (/healthz, /status, /metrics); AGENT_STATUS_PORT= (empty) turns it off.
    status_host: str = Field(default=DEFAULT_STATUS_HOST, min_length=1)
    status_port: int | None = Field(default=DEFAULT_STATUS_PORT, ge=1, le=65535)
    log_level: str = "INFO"
    # The event loop: uvloop (libuv: less CPU per request and per apply), or Python's own.
    event_loop: EventLoopName = DEFAULT_EVENT_LOOP

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        return load_secret_files(data, _SECRETS)

    @field_validator("controller_url", "worker_url")
    @classmethod
    def _without_trailing_slash(cls, value: str) -> str:
        """``http://c:8000/`` and ``http://c:8000`` are the same controller."""
        return value.rstrip("/")

    @field_validator("worker_token", "redis_url")
    @classmethod
    def _empty_token_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        """``AGENT_WORKER_TOKEN=`` or ``AGENT_REDIS_URL=`` (empty) is the same as unset."""
        return blank_secret_is_unset(value)

    @field_validator("registration_token", "worker_token")
    @classmethod
    def _long_enough_token(cls, value: SecretStr | None) -> SecretStr | None:
        """A token shorter than MIN_TOKEN_CHARS (16) is refused at start-up."""
        return long_enough_token(value)

    @field_validator("status_port", mode="before")
    @classmethod
    def _empty_port_is_off(cls, value: Any) -> Any:
        """``AGENT_STATUS_PORT=`` (empty or blank) means no status server."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("backoff_max_seconds")
    @classmethod
    def _max_not_below_base(cls, value: float, info: ValidationInfo) -> float:
        base = info.data.get("backoff_base_seconds")
        if base is not None and value < base:
            raise ValueError(f"must be at least {ENV_PREFIX}BACKOFF_BASE_SECONDS ({base})")
        return value

    @field_validator("event_loop", mode="before")
    @classmethod
    def _event_loop_any_case(cls, value: Any) -> Any:
        return event_loop_name(value)

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        return known_log_level(value)
