"""AgentSettings: AGENT_* variables, *_FILE secrets, env files, clear errors."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.settings import AgentSettings
from common.settings import describe_settings_error

REQUIRED = {
    "AGENT_CONTROLLER_URL": "http://controller.test:8000/",
    "AGENT_REGISTRATION_TOKEN": "reg-token-from-env",
}


def set_env(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def error_text(**kwargs: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        AgentSettings(_env_file=None, **kwargs)
    return describe_settings_error(caught.value, "AGENT_")


def test_defaults_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With only the required variables, every other setting has its documented default."""
    set_env(monkeypatch, **REQUIRED)
    settings = AgentSettings(_env_file=None)
    assert settings.controller_url == "http://controller.test:8000"
    assert settings.registration_token.get_secret_value() == "reg-token-from-env"
    assert settings.worker_url == "http://127.0.0.1:8080"
    assert settings.worker_token is None
    assert settings.state_dir == Path("./data/agent")
    assert settings.redis_url is None
    assert (settings.backoff_base_seconds, settings.backoff_max_seconds) == (1, 60)
    assert settings.hostname == socket.gethostname()
    assert settings.labels == {}
    assert settings.request_timeout_seconds == 10
    assert (settings.status_host, settings.status_port) == ("127.0.0.1", 8090)
    assert settings.log_level == "INFO"
    assert settings.event_loop == "uvloop"


def test_every_setting_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each AGENT_* variable sets its field; AGENT_LABELS is JSON."""
    set_env(
        monkeypatch,
        **REQUIRED,
        AGENT_WORKER_URL="https://worker.test:9443/",
        AGENT_WORKER_TOKEN="worker-token-from-env",
        AGENT_STATE_DIR=str(tmp_path),
        AGENT_REDIS_URL="redis://:pw@redis.test:6379/0",
        AGENT_BACKOFF_BASE_SECONDS="0.5",
        AGENT_BACKOFF_MAX_SECONDS="5",
        AGENT_HOSTNAME="edge-07",
        AGENT_LABELS='{"site": "ams1", "rack": "r4"}',
        AGENT_REQUEST_TIMEOUT_SECONDS="3",
        AGENT_STATUS_HOST="0.0.0.0",
        AGENT_STATUS_PORT="9190",
        AGENT_LOG_LEVEL="debug",
        AGENT_EVENT_LOOP=" AsyncIO ",
    )
    settings = AgentSettings(_env_file=None)
    assert settings.worker_url == "https://worker.test:9443"
    assert settings.worker_token is not None
    assert settings.worker_token.get_secret_value() == "worker-token-from-env"
    assert settings.state_dir == tmp_path
    assert settings.redis_url is not None
    assert settings.backoff_base_seconds == 0.5
    assert settings.backoff_max_seconds == 5
    assert settings.hostname == "edge-07"
    assert settings.labels == {"site": "ams1", "rack": "r4"}
    assert settings.request_timeout_seconds == 3
    assert (settings.status_host, settings.status_port) == ("0.0.0.0", 9190)
    assert settings.log_level == "DEBUG"
    assert settings.event_loop == "asyncio"


def test_secrets_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """AGENT_REGISTRATION_TOKEN_FILE and AGENT_WORKER_TOKEN_FILE stand for the secrets."""
    (tmp_path / "reg").write_text("reg-token-from-file\n")
    (tmp_path / "worker").write_text("worker-token-from-file\n")
    set_env(
        monkeypatch,
        AGENT_CONTROLLER_URL="http://controller.test:8000",
        AGENT_REGISTRATION_TOKEN_FILE=str(tmp_path / "reg"),
        AGENT_WORKER_TOKEN_FILE=str(tmp_path / "worker"),
    )
    settings = AgentSettings(_env_file=None)
    assert settings.registration_token.get_secret_value() == "reg-token-from-file"
    assert settings.worker_token is not None
    assert settings.worker_token.get_secret_value() == "worker-token-from-file"


def test_unreadable_secret_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A *_FILE that cannot be read names the secret in the error."""
    set_env(
        monkeypatch,
        AGENT_CONTROLLER_URL="http://controller.test:8000",
        AGENT_REGISTRATION_TOKEN_FILE=str(tmp_path / "missing"),
    )
    assert "cannot read the file given for registration_token" in error_text()


def test_env_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings come from an env file too; the environment wins over it."""
    env_file = tmp_path / "agent.env"
    env_file.write_text(
        "AGENT_CONTROLLER_URL=http://from-file.test:8000\n"
        "AGENT_REGISTRATION_TOKEN=registration-token-from-file\n"
        "AGENT_HOSTNAME=from-file\n"
    )
    monkeypatch.setenv("AGENT_HOSTNAME", "from-env")
    settings = AgentSettings(_env_file=env_file)
    assert settings.controller_url == "http://from-file.test:8000"
    assert settings.registration_token.get_secret_value() == "registration-token-from-file"
    assert settings.hostname == "from-env"


def test_missing_required_settings_are_named() -> None:
    """Without the required settings the error names both variables an operator must set."""
    text = error_text()
    assert "AGENT_CONTROLLER_URL: Field required" in text
    assert "AGENT_REGISTRATION_TOKEN: Field required" in text


@pytest.mark.parametrize("url", ["ftp://controller.test/", "controller.test:8000", ""])
def test_controller_url_must_be_http(url: str) -> None:
    """AGENT_CONTROLLER_URL must be an absolute http(s) URL."""
    assert "AGENT_CONTROLLER_URL" in error_text(
        controller_url=url, registration_token="registration-token-for-tests"
    )


def test_backoff_max_below_base_is_refused() -> None:
    """AGENT_BACKOFF_MAX_SECONDS below AGENT_BACKOFF_BASE_SECONDS is refused by name."""
    text = error_text(
        controller_url="http://c.test",
        registration_token="registration-token-for-tests",
        backoff_base_seconds=5,
        backoff_max_seconds=1,
    )
    assert "AGENT_BACKOFF_MAX_SECONDS" in text
    assert "AGENT_BACKOFF_BASE_SECONDS" in text


@pytest.mark.parametrize("name", ["backoff_base_seconds", "backoff_max_seconds"])
def test_backoff_must_be_positive(name: str) -> None:
    """Backoff settings must be greater than zero."""
    text = error_text(
        controller_url="http://c.test",
        registration_token="registration-token-for-tests",
        **{name: 0},
    )
    assert f"AGENT_{name.upper()}" in text


def test_short_registration_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """AGENT_REGISTRATION_TOKEN of 15 characters is refused by name, without its value."""
    set_env(monkeypatch, **{**REQUIRED, "AGENT_REGISTRATION_TOKEN": "fifteen-chars-x"})
    text = error_text()
    assert "AGENT_REGISTRATION_TOKEN: Value error, must be at least 16 characters" in text
    assert "fifteen-chars-x" not in text
    monkeypatch.setenv("AGENT_REGISTRATION_TOKEN", "sixteen-chars-xx")
    assert AgentSettings(_env_file=None).registration_token.get_secret_value() == (
        "sixteen-chars-xx"
    )


def test_empty_worker_token_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """AGENT_WORKER_TOKEN= (empty) means no worker token."""
    set_env(monkeypatch, **REQUIRED, AGENT_WORKER_TOKEN="")
    assert AgentSettings(_env_file=None).worker_token is None


def test_empty_redis_url_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """AGENT_REDIS_URL= (empty) means: use the hints the controller names."""
    set_env(monkeypatch, **REQUIRED, AGENT_REDIS_URL="")
    assert AgentSettings(_env_file=None).redis_url is None


def test_secrets_do_not_show(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither token shows in the settings' repr."""
    set_env(monkeypatch, **REQUIRED, AGENT_WORKER_TOKEN="worker-token-from-env")
    shown = repr(AgentSettings(_env_file=None))
    assert "reg-token-from-env" not in shown
    assert "worker-token-from-env" not in shown


def test_settings_are_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings object cannot be changed after it is built."""
    set_env(monkeypatch, **REQUIRED)
    settings = AgentSettings(_env_file=None)
    with pytest.raises(ValidationError):
        settings.hostname = "other"  # type: ignore[misc]  # the refused assignment is the test


@pytest.mark.parametrize("empty", ["", "  "])
def test_empty_status_port_turns_the_status_server_off(
    monkeypatch: pytest.MonkeyPatch, empty: str
) -> None:
    """AGENT_STATUS_PORT= (empty or blank) means no status server."""
    set_env(monkeypatch, **REQUIRED, AGENT_STATUS_PORT=empty)
    assert AgentSettings(_env_file=None).status_port is None


@pytest.mark.parametrize("port", ["abc", "0", "65536", "-1", "80.5"])
def test_bad_status_port_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    """A status port that is not an integer from 1 to 65535 is refused, naming the variable."""
    set_env(monkeypatch, **REQUIRED, AGENT_STATUS_PORT=port)
    text = error_text()
    assert "AGENT_STATUS_PORT:" in text


def test_unknown_event_loop_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """AGENT_EVENT_LOOP names uvloop or asyncio; anything else is refused, naming it."""
    set_env(monkeypatch, **REQUIRED, AGENT_EVENT_LOOP="trio")
    text = error_text()
    assert "AGENT_EVENT_LOOP:" in text
    assert "'uvloop' or 'asyncio'" in text
