"""The controller's settings: what an operator may write and what is refused."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from common.settings import describe_settings_error
from controller.settings import ControllerSettings

REQUIRED = {
    "CONTROLLER_ADMIN_TOKEN": "admin-token-for-tests",
    "CONTROLLER_REGISTRATION_TOKEN": "registration-token-for-tests",
}


def _settings(monkeypatch: pytest.MonkeyPatch, **variables: str) -> ControllerSettings:
    for name, value in {**REQUIRED, **variables}.items():
        monkeypatch.setenv(name, value)
    return ControllerSettings(_env_file=None)


@pytest.mark.parametrize("name", ["CONTROLLER_REDIS_URL", "CONTROLLER_AGENT_REDIS_URL"])
@pytest.mark.parametrize("empty", ["", "  "])
def test_empty_redis_url_means_no_redis(
    monkeypatch: pytest.MonkeyPatch, name: str, empty: str
) -> None:
    """An empty Redis URL is the same as an unset one: no hints, not a start-up crash."""
    settings = _settings(monkeypatch, **{name: empty})
    assert settings.redis_url is None
    assert settings.agent_redis_url is None


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    """CONTROLLER_LOG_LEVEL=debug is DEBUG."""
    assert _settings(monkeypatch, CONTROLLER_LOG_LEVEL=" debug ").log_level == "DEBUG"


def test_unknown_log_level_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown log level is a settings error naming the choices, not a crash later."""
    with pytest.raises(ValidationError, match="must be one of CRITICAL, DEBUG, ERROR"):
        _settings(monkeypatch, CONTROLLER_LOG_LEVEL="LOUD")


@pytest.mark.parametrize("name", ["CONTROLLER_ADMIN_TOKEN", "CONTROLLER_REGISTRATION_TOKEN"])
def test_token_shorter_than_16_characters_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A 15-character token is a settings error naming the variable and the minimum only."""
    with pytest.raises(ValidationError) as caught:
        _settings(monkeypatch, **{name: "fifteen-chars-x"})
    text = describe_settings_error(caught.value, "CONTROLLER_")
    assert f"{name}: Value error, must be at least 16 characters" in text
    assert "fifteen-chars-x" not in text


@pytest.mark.parametrize("name", ["CONTROLLER_ADMIN_TOKEN", "CONTROLLER_REGISTRATION_TOKEN"])
def test_token_of_16_characters_is_accepted(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Sixteen characters are enough for either token."""
    settings = _settings(monkeypatch, **{name: "sixteen-chars-xx"})
    tokens = {
        settings.admin_token.get_secret_value(),
        settings.registration_token.get_secret_value(),
    }
    assert "sixteen-chars-xx" in tokens


def test_workers_default_to_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CONTROLLER_WORKERS the controller is one process, as it always was."""
    assert _settings(monkeypatch).workers == 1


@pytest.mark.parametrize("auto", ["auto", " AUTO "])
def test_auto_workers_is_the_core_count(monkeypatch: pytest.MonkeyPatch, auto: str) -> None:
    """CONTROLLER_WORKERS=auto is the number of cores the process may run on."""
    assert _settings(monkeypatch, CONTROLLER_WORKERS=auto).workers == len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "Input should be greater than or equal to 1"),
        ("65", "Input should be less than or equal to 64"),
        ("-1", "Value error, expected a whole number from 1 to 64, or auto"),
        ("two", "Value error, expected a whole number from 1 to 64, or auto"),
        ("1.5", "Value error, expected a whole number from 1 to 64, or auto"),
        ("", "Value error, expected a whole number from 1 to 64, or auto"),
    ],
)
def test_invalid_workers_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    """A worker count that is not 1-64 or auto is a settings error naming the variable."""
    with pytest.raises(ValidationError) as caught:
        _settings(monkeypatch, CONTROLLER_WORKERS=value)
    assert f"CONTROLLER_WORKERS: {message}" in describe_settings_error(caught.value, "CONTROLLER_")


def test_metrics_ports_may_not_include_the_api_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics ports 8999-9000 for two workers would take CONTROLLER_PORT 9000: refused."""
    with pytest.raises(ValidationError, match="include CONTROLLER_PORT 9000"):
        _settings(
            monkeypatch,
            CONTROLLER_PORT="9000",
            CONTROLLER_WORKERS="2",
            CONTROLLER_METRICS_PORT="8999",
        )


def test_metrics_ports_may_not_pass_the_last_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers from metrics port 65535 would need port 65536: refused."""
    with pytest.raises(ValidationError, match="goes past port 65535"):
        _settings(monkeypatch, CONTROLLER_WORKERS="2", CONTROLLER_METRICS_PORT="65535")


def test_empty_metrics_port_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    """CONTROLLER_METRICS_PORT= (empty) is the same as unset: no metrics port."""
    assert _settings(monkeypatch, CONTROLLER_METRICS_PORT="").metrics_port is None


@pytest.mark.parametrize(("value", "loop"), [(" UVLOOP ", "uvloop"), ("asyncio", "asyncio")])
def test_event_loop_names_any_case(monkeypatch: pytest.MonkeyPatch, value: str, loop: str) -> None:
    """CONTROLLER_EVENT_LOOP takes uvloop or asyncio, in any case."""
    assert _settings(monkeypatch, CONTROLLER_EVENT_LOOP=value).event_loop == loop


def test_event_loop_defaults_to_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without CONTROLLER_EVENT_LOOP each controller process runs uvloop."""
    assert _settings(monkeypatch).event_loop == "uvloop"


def test_unknown_event_loop_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event loop other than uvloop or asyncio is a settings error naming both."""
    with pytest.raises(ValidationError) as caught:
        _settings(monkeypatch, CONTROLLER_EVENT_LOOP="tokio")
    text = describe_settings_error(caught.value, "CONTROLLER_")
    assert "CONTROLLER_EVENT_LOOP: Input should be 'uvloop' or 'asyncio'" in text
