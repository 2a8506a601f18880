"""``fleetconf-worker`` / ``python -m worker``: read the settings, configure logging, serve."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from common.logs import configure_logging
from common.settings import describe_settings_error
from worker.app import create_app
from worker.constants import ENV_PREFIX, SHUTDOWN_TIMEOUT_SECONDS
from worker.settings import WorkerSettings

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the worker until it is told to stop; exit 2 on invalid settings."""
    args = _parse_args(argv)
    settings = _load_settings(args.env_file)
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


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fleetconf-worker",
        description="Hold the configuration the agent sends and proxy GET /hit to its URL. "
        f"Settings come from {ENV_PREFIX}* environment variables.",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="PATH",
        help=f"read {ENV_PREFIX}* settings from this file too (the environment wins)",
    )
    args = parser.parse_args(argv)
    if args.env_file is not None and not args.env_file.is_file():
        parser.error(f"--env-file {args.env_file}: no such file")
    return args


def _load_settings(env_file: Path | None) -> WorkerSettings:
    try:
        return WorkerSettings(_env_file=env_file)
    except ValidationError as exc:
        print(describe_settings_error(exc, ENV_PREFIX), file=sys.stderr)
        raise SystemExit(2) from None
