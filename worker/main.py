"""``fleetconf-worker`` / ``python -m worker``: read the settings, configure logging, serve."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web

from common.cli import load_settings, parse_service_args, service_parser
from common.logs import configure_logging
from worker.app import create_app
from worker.constants import ENV_PREFIX, SHUTDOWN_TIMEOUT_SECONDS
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
    configure_logging(settings.log_level)
    if settings.token is None:
        logger.warning(
            "worker.open_config: %sTOKEN is not set, so anyone who can reach this port "
            "can read and replace the configuration",
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
