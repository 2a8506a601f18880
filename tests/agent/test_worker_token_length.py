"""AGENT_WORKER_TOKEN must be as long as the worker's WORKER_TOKEN must be."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agent.main import main
from agent.settings import AgentSettings
from common.settings import describe_settings_error


def _settings(worker_token: str) -> AgentSettings:
    return AgentSettings(
        _env_file=None,
        controller_url="http://controller.test:8000",
        registration_token="registration-token-for-tests",
        worker_token=worker_token,
    )


def test_short_worker_token_is_refused() -> None:
    """A worker token of 15 characters is a settings error naming AGENT_WORKER_TOKEN."""
    with pytest.raises(ValidationError) as caught:
        _settings("fifteen-chars-x")
    text = describe_settings_error(caught.value, "AGENT_")
    assert "AGENT_WORKER_TOKEN" in text
    assert "at least 16 characters" in text
    assert "fifteen-chars-x" not in text


def test_worker_token_of_16_characters_is_accepted() -> None:
    """Sixteen characters are enough; no token at all stays allowed."""
    settings = _settings("sixteen-chars-xx")
    assert settings.worker_token is not None
    assert _settings("").worker_token is None


def test_agent_refuses_to_start_with_a_short_worker_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() exits 2 at start-up with a short AGENT_WORKER_TOKEN, naming the variable."""
    monkeypatch.setenv("AGENT_CONTROLLER_URL", "http://controller.test:8000")
    monkeypatch.setenv("AGENT_REGISTRATION_TOKEN", "registration-token-for-tests")
    monkeypatch.setenv("AGENT_WORKER_TOKEN", "short")
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert "AGENT_WORKER_TOKEN" in capsys.readouterr().err
