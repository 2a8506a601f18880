"""Where the controller is and the admin token: environment variables, then flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from cli.errors import UsageError
from common.settings import read_secret_file

DEFAULT_CONTROLLER_URL: Final = "http://127.0.0.1:8000"
URL_VARIABLE: Final = "CONTROLLER_URL"
# The names of the variables, not secrets.
TOKEN_VARIABLE: Final = "FLEETCONF_ADMIN_TOKEN"  # noqa: S105
TOKEN_FILE_VARIABLE: Final = "FLEETCONF_ADMIN_TOKEN_FILE"  # noqa: S105
TIMEOUT_VARIABLE: Final = "FLEETCONF_REQUEST_TIMEOUT_SECONDS"
DEFAULT_REQUEST_TIMEOUT_SECONDS: Final = 10.0


class CliSettings(BaseSettings):
    """What ``fleetconf`` reads from its environment; built once, in ``main()``."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    controller_url: str = Field(default="", validation_alias=URL_VARIABLE)
    admin_token: SecretStr | None = Field(default=None, validation_alias=TOKEN_VARIABLE)
    admin_token_file: Path | None = Field(default=None, validation_alias=TOKEN_FILE_VARIABLE)
    # How long one request may take, connecting included.
    request_timeout_seconds: float = Field(
        default=DEFAULT_REQUEST_TIMEOUT_SECONDS, gt=0, le=3600, validation_alias=TIMEOUT_VARIABLE
    )


def load_settings() -> CliSettings:
    """The environment's settings; a bad value is a UsageError naming its variable."""
    try:
        return CliSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise UsageError(f"invalid setting {problems}") from None


@dataclass(frozen=True, kw_only=True)
class Target:
    """The controller to talk to (no trailing slash) and the admin token to send."""

    controller_url: str
    token: SecretStr


def resolve(
    settings: CliSettings, *, controller_url: str | None, token_file: Path | None
) -> Target:
    """The flags win over the environment; a missing or unusable token is a UsageError."""
    url = controller_url or settings.controller_url.strip() or DEFAULT_CONTROLLER_URL
    return Target(controller_url=_checked_url(url), token=_token(settings, token_file))


def _checked_url(url: str) -> str:
    example = f"such as {DEFAULT_CONTROLLER_URL}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (parsing the port is the check)
    except ValueError:
        raise UsageError(f"the controller URL {url!r} is not a valid URL ({example})") from None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise UsageError(f"the controller URL {url!r} is not an http(s) URL ({example})")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise UsageError(
            "the controller URL must not carry credentials, a query or a fragment; "
            f"the admin token comes from {TOKEN_VARIABLE} or a token file"
        )
    return url.rstrip("/")


def _token(settings: CliSettings, token_file: Path | None) -> SecretStr:
    if token_file is not None:
        token = _read(token_file, "--token-file")
    elif settings.admin_token is not None and settings.admin_token.get_secret_value().strip():
        token = settings.admin_token.get_secret_value().strip()
    elif settings.admin_token_file is not None:
        token = _read(settings.admin_token_file, TOKEN_FILE_VARIABLE)
    else:
        raise UsageError(
            f"no admin token: set {TOKEN_VARIABLE} or {TOKEN_FILE_VARIABLE}, or pass --token-file"
        )
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in token):
        raise UsageError("the admin token holds control characters, which HTTP cannot carry")
    return SecretStr(token)


def _read(path: Path, name: str) -> str:
    try:
        return read_secret_file(path, name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
