"""The controller's settings: what an operator may write and what is refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from controller.settings import ControllerSettings

REQUIRED = {"CONTROLLER_ADMIN_TOKEN": "admin-t", "CONTROLLER_REGISTRATION_TOKEN": "reg-t"}


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
