"""The controller's settings: what an operator may write and what is refused."""

from __future__ import annotations

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
