"""The images' HEALTHCHECK: ``python healthcheck.py SERVICE`` GETs the service's /healthz.

The address comes from the same variables the service listens on, so a container started
with another port is still checked where it listens: ``CONTROLLER_HOST`` /
``CONTROLLER_PORT``, ``WORKER_HOST`` / ``WORKER_PORT``, and for the agent its status
server, ``AGENT_STATUS_HOST`` / ``AGENT_STATUS_PORT``. A wildcard listen address (the
default ``0.0.0.0``) is checked on loopback. Exit 0 when /healthz answers 200, else 1.

Standard library only (the slim images have no curl); runs with the image's venv python.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence

TIMEOUT_SECONDS = 3.0

# service: (host variable, port variable, default host, default port)
TARGETS: dict[str, tuple[str, str, str, int]] = {
    "controller": ("CONTROLLER_HOST", "CONTROLLER_PORT", "0.0.0.0", 8000),
    "worker": ("WORKER_HOST", "WORKER_PORT", "0.0.0.0", 8080),
    "agent": ("AGENT_STATUS_HOST", "AGENT_STATUS_PORT", "127.0.0.1", 8090),
}
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


class NothingToCheckError(Exception):
    """The service was configured without the listener the check needs."""


def healthz_url(service: str, environ: Mapping[str, str]) -> str:
    """The /healthz URL of ``service`` as its settings in ``environ`` place it."""
    host_variable, port_variable, default_host, default_port = TARGETS[service]
    host = environ.get(host_variable, "").strip() or default_host
    host = _WILDCARD_HOSTS.get(host, host)
    if port_variable in environ and not environ[port_variable].strip():
        # AGENT_STATUS_PORT= (empty) turns the agent's status server off.
        raise NothingToCheckError(f"{port_variable} is empty: no server to check")
    port = environ.get(port_variable, "").strip() or str(default_port)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def check(url: str) -> None:
    """GET ``url`` directly (never through a proxy from the environment); raise unless 200."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    # The scheme is always http: the URL is built above, never taken from outside.
    with opener.open(url, timeout=TIMEOUT_SECONDS) as response:
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    if len(argv) != 2 or argv[1] not in TARGETS:
        print(f"usage: healthcheck.py {{{','.join(TARGETS)}}}", file=sys.stderr)
        return 2
    try:
        url = healthz_url(argv[1], environ)
    except NothingToCheckError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    try:
        check(url)
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv, os.environ))
