"""The controller's settings: environment variables prefixed CONTROLLER_, or an env file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.constants import (
    DEFAULT_HINT_CHANNEL,
    MAX_POLL_INTERVAL_SECONDS,
    MIN_POLL_INTERVAL_SECONDS,
)
from common.event_loop import DEFAULT_EVENT_LOOP, EventLoopName, event_loop_name
from common.settings import (
    blank_secret_is_unset,
    known_log_level,
    load_secret_files,
    long_enough_token,
)
from controller.addresses import Network, parse_networks
from controller.constants import (
    AGENT_TOKEN_CACHE_SECONDS,
    AUTH_FAILURE_WINDOW_SECONDS,
    AUTH_FAILURES_PER_WINDOW,
    DEFAULT_MAX_HELD_POLLS,
    DEFAULT_POLL_WAIT_MAX_SECONDS,
    MAX_WORKERS,
    REGISTRATION_QUEUE_LIMIT,
)

ENV_PREFIX = "CONTROLLER_"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./data/controller.db"
_SECRETS = ("admin_token", "registration_token", "database_url", "redis_url", "agent_redis_url")
_DRIVER_BY_SCHEME = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "sqlite": "sqlite+aiosqlite",
}


def normalise_database_url(url: str) -> str:
    """Give plain ``postgresql://`` and ``sqlite://`` URLs the async driver fleetconf uses."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("expected a URL such as postgresql://user@host/db or sqlite:///path")
    return f"{_DRIVER_BY_SCHEME.get(scheme, scheme)}://{rest}"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), which ``auto`` workers means."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def parse_workers(value: Any) -> Any:
    """``auto`` (any case) is the number of cores; a whole number stays; anything else is
    refused with the choices named."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return min(available_cores(), MAX_WORKERS)
        if not (text.isascii() and text.isdigit()):
            raise ValueError(f"expected a whole number from 1 to {MAX_WORKERS}, or auto")
        return int(text)
    return value


class ControllerSettings(BaseSettings):
    """Everything the controller reads from its environment; built once, in ``main()``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    # Controller processes sharing the port (SO_REUSEPORT), each a full replica; ``auto``
    # is one per core. 1 is a single process, as without this setting.
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    # Each process also serves /metrics (and /healthz) on this port plus its index (0, 1,
    # ...), so Prometheus scrapes every process, not whichever the kernel picks. Unset: none.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # The event loop each process runs: uvloop (libuv), or Python's own.
    event_loop: EventLoopName = DEFAULT_EVENT_LOOP
    # Secrets: a database or Redis URL may carry a password.
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    database_url_file: Path | None = None
    redis_url: SecretStr | None = None
    redis_url_file: Path | None = None
    # The Redis URL agents are told to subscribe with (a subscribe-only ACL user); unset:
    # redis_url if it carries no credential (an open Redis), else none (agents poll).
    agent_redis_url: SecretStr | None = None
    agent_redis_url_file: Path | None = None
    hint_channel: str = Field(default=DEFAULT_HINT_CHANNEL, min_length=1)
    # The floor of the GET /config rate a hint's spread is sized for (8x it is the cap):
    # the controller measures what it can serve, lets the part of the fleet it answers
    # within 0.5 s fetch at once and spreads the rest (controller/hints.py).
    hint_fetch_rate_per_second: float = Field(default=4000.0, gt=0)
    admin_token: SecretStr = Field(min_length=1)
    admin_token_file: Path | None = None
    registration_token: SecretStr = Field(min_length=1)
    registration_token_file: Path | None = None
    poll_interval_seconds: int = Field(
        default=30, ge=MIN_POLL_INTERVAL_SECONDS, le=MAX_POLL_INTERVAL_SECONDS
    )
    # The longest a poll is held (Prefer: wait) waiting for a change; 0: never held.
    # Keep it below the idle timeout of any proxy between agents and controllers.
    poll_wait_max_seconds: int = Field(default=DEFAULT_POLL_WAIT_MAX_SECONDS, ge=0, le=3600)
    # Polls held at once by one process (one per agent); beyond, answered at once.
    max_held_polls: int = Field(default=DEFAULT_MAX_HELD_POLLS, ge=0, le=1_000_000)
    # POST /register per client address: a burst, then this many per second (429 beyond).
    registration_rate_per_second: float = Field(default=20.0, gt=0)
    registration_burst: int = Field(default=200, ge=1)
    # Registrations held unwritten (queued for the next group commit, or being written)
    # before further ones get 429 with Retry-After: bounds the memory a storm can take.
    registration_queue_limit: int = Field(default=REGISTRATION_QUEUE_LIMIT, ge=1, le=100_000)
    # Failed authentications per client address in a window; beyond them 429.
    auth_failures_per_window: int = Field(default=AUTH_FAILURES_PER_WINDOW, ge=1)
    auth_failure_window_seconds: float = Field(default=AUTH_FAILURE_WINDOW_SECONDS, gt=0)
    # Comma-separated CIDRs of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: str | None = None
    # How long a verified agent token is trusted before it is looked up again; a
    # revocation clears every replica's cache at once regardless.
    agent_token_cache_seconds: float = Field(default=AGENT_TOKEN_CACHE_SECONDS, gt=0)
    migrate_on_start: bool = True
    log_level: str = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        return load_secret_files(data, _SECRETS)

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        return parse_workers(value)

    @field_validator("event_loop", mode="before")
    @classmethod
    def _event_loop_any_case(cls, value: Any) -> Any:
        return event_loop_name(value)

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _empty_port_is_unset(cls, value: Any) -> Any:
        """``CONTROLLER_METRICS_PORT=`` (empty) means no metrics port."""
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _metrics_ports_fit(self) -> ControllerSettings:
        """The metrics ports (one per process) are real ports, and none is the API's."""
        if self.metrics_port is None:
            return self
        last = self.metrics_port + self.workers - 1
        if last > 65535:
            raise ValueError(
                f"CONTROLLER_METRICS_PORT {self.metrics_port} plus {self.workers} workers "
                "goes past port 65535"
            )
        if self.metrics_port <= self.port <= last:
            raise ValueError(
                f"the metrics ports {self.metrics_port}-{last} include CONTROLLER_PORT {self.port}"
            )
        return self

    @field_validator("redis_url", "agent_redis_url")
    @classmethod
    def _empty_url_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        """``CONTROLLER_REDIS_URL=`` (empty) means no Redis, as an unset variable does."""
        return blank_secret_is_unset(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str | None) -> str | None:
        if value is not None:
            parse_networks(value)
        return value or None

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies or "")

    @field_validator("admin_token", "registration_token")
    @classmethod
    def _long_enough_token(cls, value: SecretStr) -> SecretStr:
        """A token shorter than MIN_TOKEN_CHARS (16) is refused at start-up."""
        return long_enough_token(value)

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        return known_log_level(value)

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: SecretStr) -> SecretStr:
        return SecretStr(normalise_database_url(value.get_secret_value()))

    @model_validator(mode="after")
    def _roles_differ(self) -> ControllerSettings:
        if self.admin_token.get_secret_value() == self.registration_token.get_secret_value():
            raise ValueError("the admin token and the registration token must differ")
        return self
