"""``make demo``: the whole stack on one machine: controller (SQLite), worker and agent.

Starts the three services as processes, publishes an initial configuration
(``DEMO_URL``, default https://ip.me), waits until the worker runs it, prints the
commands to try, and stops all three on Ctrl-C. No PostgreSQL or Redis is needed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.settings import MIN_TOKEN_CHARS

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
# Random bytes per generated token: token_urlsafe(16) is 22 characters.
TOKEN_BYTES = 16


def _request(method: str, url: str, token: str | None = None, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"null")


def _wait_for(what: str, check: Callable[[], bool], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"demo: a service exited while waiting for {what}; see the log above")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"demo: timed out waiting for {what}")


def _start(module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A process group of its own: Ctrl-C reaches only the demo, which then stops each
    # service once (a second signal would cut a service's clean shutdown short).
    return subprocess.Popen(
        [sys.executable, "-m", module], env={**os.environ, **env}, cwd=ROOT, process_group=0
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _admin_token() -> tuple[str, bool]:
    """DEMO_ADMIN_TOKEN, or a fresh random token; and whether it was generated. A given
    token shorter than the controller accepts stops the demo before anything starts."""
    given = os.environ.get("DEMO_ADMIN_TOKEN", "")
    if not given:
        return secrets.token_urlsafe(TOKEN_BYTES), True
    if len(given) < MIN_TOKEN_CHARS:
        raise SystemExit(
            f"demo: DEMO_ADMIN_TOKEN must be at least {MIN_TOKEN_CHARS} characters "
            "(e.g. `openssl rand -hex 32`), as the controller's CONTROLLER_ADMIN_TOKEN must be"
        )
    return given, False


def main() -> None:
    url = os.environ.get("DEMO_URL", "https://ip.me")
    controller_port = os.environ.get("DEMO_CONTROLLER_PORT", "8000")
    worker_port = os.environ.get("DEMO_WORKER_PORT", "8080")
    agent_status_port = os.environ.get("DEMO_AGENT_STATUS_PORT", "8090")
    admin_token, generated = _admin_token()
    registration_token = secrets.token_urlsafe(TOKEN_BYTES)
    worker_token = secrets.token_urlsafe(TOKEN_BYTES)
    controller_url = f"http://127.0.0.1:{controller_port}"
    worker_url = f"http://127.0.0.1:{worker_port}"
    DATA_DIR.mkdir(exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        procs.append(
            _start(
                "controller",
                {
                    "CONTROLLER_HOST": "127.0.0.1",
                    "CONTROLLER_PORT": controller_port,
                    "CONTROLLER_DATABASE_URL": f"sqlite+aiosqlite:///{DATA_DIR}/controller.db",
                    "CONTROLLER_ADMIN_TOKEN": admin_token,
                    "CONTROLLER_REGISTRATION_TOKEN": registration_token,
                    "CONTROLLER_POLL_INTERVAL_SECONDS": "5",
                },
            )
        )
        _wait_for(
            "the controller", lambda: bool(_request("GET", f"{controller_url}/healthz")), procs
        )
        procs.append(
            _start(
                "worker",
                {
                    "WORKER_HOST": "127.0.0.1",
                    "WORKER_PORT": worker_port,
                    "WORKER_TOKEN": worker_token,
                },
            )
        )
        _wait_for("the worker", lambda: bool(_request("GET", f"{worker_url}/healthz")), procs)
        procs.append(
            _start(
                "agent",
                {
                    "AGENT_CONTROLLER_URL": controller_url,
                    "AGENT_REGISTRATION_TOKEN": registration_token,
                    "AGENT_WORKER_URL": worker_url,
                    "AGENT_WORKER_TOKEN": worker_token,
                    "AGENT_STATE_DIR": str(DATA_DIR / "agent"),
                    "AGENT_STATUS_HOST": "127.0.0.1",
                    "AGENT_STATUS_PORT": agent_status_port,
                },
            )
        )
        _request("PUT", f"{controller_url}/settings", admin_token, {"poll_interval_seconds": 5})
        published = _request("POST", f"{controller_url}/config", admin_token, {"url": url})
        version = published["version"]
        _wait_for(
            "the worker to receive the configuration",
            lambda: _request("GET", f"{worker_url}/config", worker_token)["version"] >= version,
            procs,
        )
        agent_url = f"http://127.0.0.1:{agent_status_port}" if agent_status_port else None
        shown_token = admin_token if generated else "<the DEMO_ADMIN_TOKEN you gave>"
        _announce(controller_url, worker_url, agent_url, shown_token, version, url)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        print("demo: a service exited; stopping the others", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ndemo: stopping", file=sys.stderr)
    finally:
        _stop(procs)


def _announce(
    controller_url: str,
    worker_url: str,
    agent_url: str | None,
    token: str,
    version: int,
    url: str,
) -> None:
    """Print what to try. ``token`` is the admin token when the demo generated it (the
    operator has no other way to learn it), a placeholder when they chose it."""
    agent_lines = f"  curl {agent_url}/status     (and /metrics)\n" if agent_url else ""
    print(
        f"""
fleetconf demo is running: controller {controller_url}, worker {worker_url}, one agent.
The worker runs version {version}: {{"url": "{url}"}}
The admin token (a new one each run unless DEMO_ADMIN_TOKEN names one):

  export ADMIN_TOKEN='{token}'
  curl {worker_url}/hit
  curl -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \\
       -d '{{"url": "https://example.org"}}' {controller_url}/config
  open {controller_url}/console  (the web console: paste the admin token)
  open {controller_url}/docs  (and {worker_url}/docs)
{agent_lines}  curl {controller_url}/metrics  (and {worker_url}/metrics)

Ctrl-C stops all three.
""",
        flush=True,
    )


if __name__ == "__main__":
    main()
