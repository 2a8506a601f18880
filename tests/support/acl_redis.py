"""redis-server started through the shipped entrypoint (docker/redis/entrypoint.sh), so it
runs the shipped ACL: for the tests of that ACL, over plain TCP and over TLS."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.support.services import free_port, unavailable

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "docker" / "redis" / "entrypoint.sh"
CONTROLLER_PASSWORD = "controller-password-for-the-acl-test"
AGENT_PASSWORD = "agent-password-for-the-acl-test"
START_TIMEOUT_SECONDS = 10.0


def require_commands(*names: str) -> None:
    """Skip (fail under CI) unless every command is installed."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        message = f"not installed: {', '.join(missing)}"
        unavailable(message, ci_detail=", and CI=true")


class AclRedis:
    """redis-server started through docker/redis/entrypoint.sh, on a free loopback port;
    ``tls_env`` (REDIS_TLS_*) is handed to the entrypoint as compose hands it."""

    def __init__(
        self, workdir: Path, tls_env: dict[str, str] | None = None, *, port: int | None = None
    ) -> None:
        require_commands("redis-server", "sha256sum")
        self.port = port or free_port()
        self.acl_file = workdir / "users.acl"
        secrets = workdir / "secrets"
        secrets.mkdir()
        (secrets / "redis_controller_password").write_text(CONTROLLER_PASSWORD + "\n")
        (secrets / "redis_agent_password").write_text(AGENT_PASSWORD + "\n")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "REDIS_ACL_SECRETS_DIR": str(secrets),
            "REDIS_ACL_FILE": str(self.acl_file),
            **(tls_env or {}),
        }
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(workdir)]
        self.log = workdir / "redis.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["/bin/sh", str(ENTRYPOINT), *args], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def url(self, user: str | None, password: str | None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def wait_started(self, *ports: int) -> None:
        """Wait until the ACL is rendered and the plain port (and ``ports``) accept."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        waiting = [self.port, *ports]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server with the shipped ACL exited: {self.output()}")
            if self.acl_file.exists():
                waiting = [port for port in waiting if not _accepts(port)]
                if not waiting:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server with the shipped ACL did not start: {self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports (held together while chosen, so no two match)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
