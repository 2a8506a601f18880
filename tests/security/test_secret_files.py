"""Every secret setting of every service also reads a ``*_FILE`` (Docker secrets), every
token is at least 16 characters long, and neither the settings nor their error messages
ever show a secret."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from agent.main import main as agent_main
from agent.settings import AgentSettings
from common.settings import MIN_TOKEN_CHARS
from controller.main import main as controller_main
from controller.settings import ControllerSettings
from tests.security.conftest import (
    ADMIN_TOKEN,
    REGISTRATION_TOKEN,
    WORKER_TOKEN,
    MakeController,
    bearer,
)
from worker.main import main as worker_main
from worker.settings import WorkerSettings

FROM_FILE = "from-file-5d0e8c3a1b-never-log-me"
# A URL secret: the password is the part that must never show.
URL_FROM_FILE = f"redis://fleet:{FROM_FILE}@127.0.0.1:6379/0"
DATABASE_URL_FROM_FILE = f"postgresql://fleet:{FROM_FILE}@127.0.0.1:5432/fleet"


@dataclass(frozen=True)
class SecretSetting:
    variable: str
    settings_class: type[BaseSettings]
    field: str
    required: dict[str, str]
    main: Callable[[list[str]], None]
    # What the file holds, and the value the setting then has (URLs get their driver).
    in_file: str = FROM_FILE
    value: str = FROM_FILE

    @property
    def id(self) -> str:
        return self.variable


_CONTROLLER_REQUIRED = {
    "CONTROLLER_ADMIN_TOKEN": ADMIN_TOKEN,
    "CONTROLLER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
    "CONTROLLER_MIGRATE_ON_START": "false",
}
_AGENT_REQUIRED = {
    "AGENT_CONTROLLER_URL": "http://127.0.0.1:9",
    "AGENT_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
}

SECRET_SETTINGS = [
    SecretSetting(
        "CONTROLLER_ADMIN_TOKEN",
        ControllerSettings,
        "admin_token",
        _CONTROLLER_REQUIRED,
        controller_main,
    ),
    SecretSetting(
        "CONTROLLER_REGISTRATION_TOKEN",
        ControllerSettings,
        "registration_token",
        _CONTROLLER_REQUIRED,
        controller_main,
    ),
    SecretSetting(
        "CONTROLLER_DATABASE_URL",
        ControllerSettings,
        "database_url",
        _CONTROLLER_REQUIRED,
        controller_main,
        in_file=DATABASE_URL_FROM_FILE,
        value=DATABASE_URL_FROM_FILE.replace("postgresql://", "postgresql+psycopg://"),
    ),
    SecretSetting(
        "CONTROLLER_REDIS_URL",
        ControllerSettings,
        "redis_url",
        _CONTROLLER_REQUIRED,
        controller_main,
        in_file=URL_FROM_FILE,
        value=URL_FROM_FILE,
    ),
    SecretSetting(
        "CONTROLLER_AGENT_REDIS_URL",
        ControllerSettings,
        "agent_redis_url",
        _CONTROLLER_REQUIRED,
        controller_main,
        in_file=URL_FROM_FILE,
        value=URL_FROM_FILE,
    ),
    SecretSetting(
        "AGENT_REDIS_URL",
        AgentSettings,
        "redis_url",
        _AGENT_REQUIRED,
        agent_main,
        in_file=URL_FROM_FILE,
        value=URL_FROM_FILE,
    ),
    SecretSetting(
        "AGENT_REGISTRATION_TOKEN", AgentSettings, "registration_token", _AGENT_REQUIRED, agent_main
    ),
    SecretSetting(
        "AGENT_WORKER_TOKEN",
        AgentSettings,
        "worker_token",
        {**_AGENT_REQUIRED, "AGENT_WORKER_TOKEN": WORKER_TOKEN},
        agent_main,
    ),
    SecretSetting(
        "WORKER_TOKEN", WorkerSettings, "token", {"WORKER_TOKEN": WORKER_TOKEN}, worker_main
    ),
]


def _environment(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


# The Bearer tokens among the secrets: each is refused at start-up below MIN_TOKEN_CHARS.
TOKEN_SETTINGS = [s for s in SECRET_SETTINGS if s.variable.endswith("_TOKEN")]
FIFTEEN_CHARS = "fifteen-chars-x"
SIXTEEN_CHARS = "sixteen-chars-xx"


def _set_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, setting: SecretSetting, token: str, via: str
) -> None:
    """The service's required settings, with ``setting`` given ``token`` directly or in a file."""
    variables = {k: v for k, v in setting.required.items() if k != setting.variable}
    if via == "file":
        secret_file = tmp_path / "token"
        secret_file.write_text(token + "\n", encoding="utf-8")
        variables[f"{setting.variable}_FILE"] = str(secret_file)
    else:
        variables[setting.variable] = token
    _environment(monkeypatch, variables)


@pytest.mark.parametrize("via", ["env", "file"])
@pytest.mark.parametrize("setting", TOKEN_SETTINGS, ids=lambda s: s.id)
def test_token_of_15_characters_stops_the_service(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setting: SecretSetting,
    via: str,
) -> None:
    """A token of 15 characters, from the environment or its *_FILE, is exit 2 at start-up
    with a message naming the variable and the minimum, never the token."""
    assert len(FIFTEEN_CHARS) == MIN_TOKEN_CHARS - 1
    _set_token(monkeypatch, tmp_path, setting, FIFTEEN_CHARS, via)
    with pytest.raises(SystemExit) as stopped:
        setting.main([])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"{setting.variable}: Value error, must be at least 16 characters" in err
    assert FIFTEEN_CHARS not in err


@pytest.mark.parametrize("via", ["env", "file"])
@pytest.mark.parametrize("setting", TOKEN_SETTINGS, ids=lambda s: s.id)
def test_token_of_16_characters_is_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, setting: SecretSetting, via: str
) -> None:
    """A token of exactly 16 characters, from the environment or its *_FILE, is accepted."""
    assert len(SIXTEEN_CHARS) == MIN_TOKEN_CHARS
    _set_token(monkeypatch, tmp_path, setting, SIXTEEN_CHARS, via)
    settings = setting.settings_class(_env_file=None)
    value = getattr(settings, setting.field)
    assert isinstance(value, SecretStr)
    assert value.get_secret_value() == SIXTEEN_CHARS


@pytest.mark.parametrize("setting", SECRET_SETTINGS, ids=lambda s: s.id)
def test_secret_is_read_from_its_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, setting: SecretSetting
) -> None:
    """``<NAME>_FILE`` stands for ``<NAME>``; the file's final newline is cut; the value
    is a SecretStr that repr, str and JSON dumps mask."""
    secret_file = tmp_path / "secret"
    secret_file.write_text(setting.in_file + "\n", encoding="utf-8")
    variables = {k: v for k, v in setting.required.items() if k != setting.variable}
    _environment(monkeypatch, {**variables, f"{setting.variable}_FILE": str(secret_file)})
    settings = setting.settings_class(_env_file=None)
    value = getattr(settings, setting.field)
    assert isinstance(value, SecretStr)
    assert value.get_secret_value() == setting.value
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert FROM_FILE not in shown
        for other in (ADMIN_TOKEN, REGISTRATION_TOKEN, WORKER_TOKEN):
            assert other not in shown


@pytest.mark.parametrize("setting", SECRET_SETTINGS, ids=lambda s: s.id)
def test_unreadable_secret_file_is_exit_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setting: SecretSetting,
) -> None:
    """A ``*_FILE`` that cannot be read stops the command (exit 2) with a message that
    names the setting and shows no secret, neither its own nor another's."""
    variables = {k: v for k, v in setting.required.items() if k != setting.variable}
    _environment(monkeypatch, {**variables, f"{setting.variable}_FILE": str(tmp_path / "none")})
    with pytest.raises(SystemExit) as stopped:
        setting.main([])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"cannot read the file given for {setting.field}:" in err
    for secret in (ADMIN_TOKEN, REGISTRATION_TOKEN, WORKER_TOKEN):
        assert secret not in err


def test_settings_errors_do_not_echo_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Equal admin and registration tokens are refused (exit 2) without printing them."""
    _environment(
        monkeypatch,
        {
            "CONTROLLER_ADMIN_TOKEN": ADMIN_TOKEN,
            "CONTROLLER_REGISTRATION_TOKEN": ADMIN_TOKEN,
            "CONTROLLER_PORT": "not-a-port",
        },
    )
    with pytest.raises(SystemExit) as stopped:
        controller_main([])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "CONTROLLER_PORT" in err
    assert ADMIN_TOKEN not in err


async def test_controller_tokens_from_files_guard_the_api(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make_controller: MakeController,
    sqlite_url: str,
) -> None:
    """Tokens from CONTROLLER_*_TOKEN_FILE are the ones the running app accepts."""
    (tmp_path / "admin").write_text("admin-token-from-file\n", encoding="utf-8")
    (tmp_path / "registration").write_text("registration-from-file\n", encoding="utf-8")
    _environment(
        monkeypatch,
        {
            "CONTROLLER_ADMIN_TOKEN_FILE": str(tmp_path / "admin"),
            "CONTROLLER_REGISTRATION_TOKEN_FILE": str(tmp_path / "registration"),
        },
    )
    settings = ControllerSettings(_env_file=None, database_url=sqlite_url)
    assert settings.admin_token.get_secret_value() == "admin-token-from-file"
    client = await make_controller(
        admin_token=settings.admin_token, registration_token=settings.registration_token
    )
    posted = await client.post(
        "/config", json={"url": None}, headers=bearer("admin-token-from-file")
    )
    assert posted.status == 200
    registered = await client.post(
        "/register", json={"hostname": "h"}, headers=bearer("registration-from-file")
    )
    assert registered.status == 201
    refused = await client.post("/config", json={"url": None}, headers=bearer(ADMIN_TOKEN))
    assert refused.status == 401


def test_empty_worker_token_file_does_not_open_the_worker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A WORKER_TOKEN_FILE that names an empty file fails closed: a settings error."""
    (tmp_path / "token").write_text("\n", encoding="utf-8")
    monkeypatch.setenv("WORKER_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(ValidationError, match="the file given for token is empty"):
        WorkerSettings(_env_file=None)
