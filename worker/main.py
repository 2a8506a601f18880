"""``fleetconf-worker`` / ``python -m worker``: read the settings, configure logging, serve."""

from __future__ import annotations

import ipaddress
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from common.cli import load_settings, parse_service_args, service_parser
from common.logs import configure_logging
from worker.app import create_app
from worker.constants import ENV_PREFIX, LOOPBACK_HOSTS, SHUTDOWN_TIMEOUT_SECONDS
from worker.settings import WorkerSettings

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the worker until it is told to stop; exit 2 on invalid settings."""
    parser = service_parser(
        prog="fleetconf-worker",
        description="Hold the configuration the agent sends and proxy GET /hit to its URL.",
        env_prefix=ENV_PREFIX,
    )
    args = parse_service_args(parser, argv)
    settings = load_settings(WorkerSettings, args.env_file, ENV_PREFIX)
    refusal = open_config_refusal(settings)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        raise SystemExit(2)
    configure_logging(settings.log_level)
    if settings.token is None:
        logger.warning(
            "worker.open_config: %sTOKEN is not set, so any process on this machine can "
            "read and replace the configuration",
            ENV_PREFIX,
        )
    logger.info("worker.starting host=%s port=%d", settings.host, settings.port)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
    )


def open_config_refusal(settings: WorkerSettings) -> str | None:
    """Why the worker must not start: /config without a token on a non-loopback address.

    Only the agent may change the worker's configuration; without a token, anyone who
    can reach the port could, so an open /config is only allowed on loopback.
    """
    if settings.token is not None or is_loopback(settings.host):
        return None
    return (
        f"refusing to start: {ENV_PREFIX}HOST={settings.host} is not a loopback address and "
        f"{ENV_PREFIX}TOKEN is not set, so anyone who can reach the port could replace the "
        f"configuration. Set {ENV_PREFIX}TOKEN (or {ENV_PREFIX}TOKEN_FILE) to a secret of "
        f"at least 16 characters shared with the agent as AGENT_WORKER_TOKEN, or set "
        f"{ENV_PREFIX}HOST=127.0.0.1."
    )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; False for wildcards and names."""
    if host.strip().lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False
