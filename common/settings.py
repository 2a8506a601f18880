"""What the three services' settings share: secrets that may come from files."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import SecretStr, ValidationError


def load_secret_files(data: Any, names: Iterable[str]) -> Any:
    """For each secret ``name`` not given directly, read it from ``<name>_file`` if set.

    Docker secrets arrive as files; ``CONTROLLER_ADMIN_TOKEN_FILE=/run/secrets/admin``
    stands for ``CONTROLLER_ADMIN_TOKEN``. Trailing white space (a final newline) is cut.
    """
    if not isinstance(data, dict):
        return data
    for name in names:
        path = data.get(f"{name}_file")
        if path and not data.get(name):
            data[name] = read_secret_file(Path(path), name)
    return data


def read_secret_file(path: Path, name: str) -> str:
    """The secret held in ``path``, trailing white space cut; ValueError naming ``name``
    (never the content) when the file cannot be read or is empty."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read the file given for {name}: {reason}") from None
    if not secret:
        # A secret file that is there but empty is a mistake (a bad mount), not a wish
        # to run without the secret.
        raise ValueError(f"the file given for {name} is empty")
    return secret


def describe_settings_error(exc: ValidationError, env_prefix: str) -> str:
    """One line per bad setting, named as the environment variable an operator sets."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        name = "_".join(str(part) for part in err["loc"]).upper()
        variable = f"{env_prefix}{name}" if name else env_prefix.rstrip("_")
        lines.append(f"  {variable}: {err['msg']}")
    return "invalid settings:\n" + "\n".join(lines)


LOG_LEVELS = frozenset({"CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"})


def known_log_level(value: str) -> str:
    """A log level name, upper-cased; a ValueError naming the choices otherwise."""
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(sorted(LOG_LEVELS))}")
    return level


def blank_secret_is_unset(value: SecretStr | None) -> SecretStr | None:
    """``X_TOKEN=`` (empty or blank) means no token, as an unset variable does."""
    if value is None or not value.get_secret_value().strip():
        return None
    return value


# Every Bearer token a service is given (admin, registration, worker) is refused at
# start-up when it is shorter than this: a short token can be guessed.
MIN_TOKEN_CHARS: Final = 16

TokenT = TypeVar("TokenT", bound=SecretStr | None)


def long_enough_token(value: TokenT) -> TokenT:
    """``value`` unchanged, or a ValueError naming the minimum (never the value) when it is
    shorter than MIN_TOKEN_CHARS; the settings error names the variable."""
    if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
        raise ValueError(
            f"must be at least {MIN_TOKEN_CHARS} characters (e.g. `openssl rand -hex 32`)"
        )
    return value
