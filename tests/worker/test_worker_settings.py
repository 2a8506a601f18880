"""Worker settings and the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.main import is_loopback, main, open_config_refusal
from worker.settings import WorkerSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_the_design() -> None:
    """Without variables: 0.0.0.0:8080, no token, 10 s, 10 MiB and 64 in flight for /hit."""
    settings = WorkerSettings(_env_file=None)
    assert (settings.host, settings.port, settings.token) == ("0.0.0.0", 8080, None)
    assert settings.hit_timeout_seconds == 10
    assert settings.hit_max_bytes == 10 * 1024 * 1024
    assert settings.hit_max_in_flight == 64


def test_reads_worker_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """WORKER_* variables set the port, token and /hit limits."""
    monkeypatch.setenv("WORKER_PORT", "9090")
    monkeypatch.setenv("WORKER_TOKEN", "from-env-worker-token")
    monkeypatch.setenv("WORKER_HIT_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("WORKER_HIT_MAX_BYTES", "100")
    monkeypatch.setenv("WORKER_HIT_MAX_IN_FLIGHT", "3")
    settings = WorkerSettings(_env_file=None)
    assert settings.port == 9090
    assert settings.token is not None
    assert settings.token.get_secret_value() == "from-env-worker-token"
    assert (settings.hit_timeout_seconds, settings.hit_max_bytes) == (2.5, 100)
    assert settings.hit_max_in_flight == 3


def test_reads_token_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """WORKER_TOKEN_FILE supplies the token (a Docker secret), final newline cut."""
    secret = tmp_path / "worker_token"
    secret.write_text("from-file-worker-token\n", encoding="utf-8")
    monkeypatch.setenv("WORKER_TOKEN_FILE", str(secret))
    settings = WorkerSettings(_env_file=None)
    assert settings.token is not None
    assert settings.token.get_secret_value() == "from-file-worker-token"


def test_unreadable_token_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A WORKER_TOKEN_FILE that cannot be read is a settings error, not an open worker."""
    monkeypatch.setenv("WORKER_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ValidationError):
        WorkerSettings(_env_file=None)


def test_empty_token_means_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """WORKER_TOKEN set to an empty string counts as unset."""
    monkeypatch.setenv("WORKER_TOKEN", "")
    assert WorkerSettings(_env_file=None).token is None


def test_token_is_not_in_the_repr() -> None:
    """The settings' repr masks the token."""
    assert "s3cret" not in repr(WorkerSettings(token="s3cret-worker-token", _env_file=None))


def test_reads_env_file(tmp_path: Path) -> None:
    """An env file given as _env_file supplies WORKER_* settings."""
    env_file = tmp_path / "worker.env"
    env_file.write_text("WORKER_PORT=18081\nWORKER_LOG_LEVEL=debug\n", encoding="utf-8")
    settings = WorkerSettings(_env_file=env_file)
    assert (settings.port, settings.log_level) == (18081, "DEBUG")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKER_PORT", "0"),
        ("WORKER_PORT", "65536"),
        ("WORKER_HIT_TIMEOUT_SECONDS", "0"),
        ("WORKER_HIT_MAX_BYTES", "-1"),
        ("WORKER_HIT_MAX_IN_FLIGHT", "0"),
        ("WORKER_HIT_MAX_IN_FLIGHT", "10001"),
        ("WORKER_HIT_MAX_IN_FLIGHT", "many"),
        ("WORKER_LOG_LEVEL", "LOUD"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """Out-of-range ports, non-positive limits and unknown log levels are refused."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        WorkerSettings(_env_file=None)


def test_main_exits_2_naming_the_bad_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() with an invalid setting prints the variable's name to stderr and exits 2."""
    env_file = tmp_path / "worker.env"
    env_file.write_text("WORKER_PORT=0\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["--env-file", str(env_file)])
    assert exited.value.code == 2
    assert "WORKER_PORT" in capsys.readouterr().err


def test_main_refuses_a_missing_env_file(tmp_path: Path) -> None:
    """main() exits 2 when --env-file names no file, rather than ignoring it."""
    with pytest.raises(SystemExit) as exited:
        main(["--env-file", str(tmp_path / "absent.env")])
    assert exited.value.code == 2


def test_module_help_runs() -> None:
    """`python -m worker --help` prints usage with --env-file and exits 0."""
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--env-file" in result.stdout


def test_short_token_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A WORKER_TOKEN (or token file) shorter than 16 characters is a settings error."""
    monkeypatch.setenv("WORKER_TOKEN", "fifteen-chars-x")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        WorkerSettings(_env_file=None)
    monkeypatch.delenv("WORKER_TOKEN")
    secret = tmp_path / "worker_token"
    secret.write_text("short\n", encoding="utf-8")
    monkeypatch.setenv("WORKER_TOKEN_FILE", str(secret))
    with pytest.raises(ValidationError, match="at least 16 characters"):
        WorkerSettings(_env_file=None)
    monkeypatch.setenv("WORKER_TOKEN", "sixteen-chars-xx")
    assert WorkerSettings(_env_file=None).token is not None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("worker.example", False),
    ],
)
def test_only_loopback_hosts_count_as_loopback(host: str, loopback: bool) -> None:
    """Wildcards, other addresses and names (which may resolve anywhere) are not loopback."""
    assert is_loopback(host) is loopback


def test_open_config_is_allowed_on_loopback_only() -> None:
    """No token is fine on loopback; on another address only with a token."""
    token = "a-worker-token-of-32-characters!"
    assert open_config_refusal(WorkerSettings(host="127.0.0.1", _env_file=None)) is None
    assert open_config_refusal(WorkerSettings(host="0.0.0.0", token=token, _env_file=None)) is None
    refusal = open_config_refusal(WorkerSettings(host="0.0.0.0", _env_file=None))
    assert refusal is not None
    assert "WORKER_TOKEN" in refusal
    assert "WORKER_HOST=0.0.0.0" in refusal


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_worker_refuses_to_start_unauthenticated_on_a_public_address(host: str) -> None:
    """`python -m worker` on a non-loopback address without WORKER_TOKEN exits 2 at once,
    naming WORKER_TOKEN and WORKER_HOST, and never listens."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    environ.update({"WORKER_HOST": host, "WORKER_PORT": str(_free_port())})
    result = subprocess.run(
        [sys.executable, "-m", "worker"],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "WORKER_TOKEN" in result.stderr
    assert f"WORKER_HOST={host}" in result.stderr
    assert "worker.starting" not in result.stderr


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
