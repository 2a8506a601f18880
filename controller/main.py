"""``fleetconf-controller``: serve the API (the default) or run the migrations."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from common.logs import configure_logging
from common.settings import describe_settings_error
from controller import migrations
from controller.app import create_app
from controller.constants import SHUTDOWN_TIMEOUT_SECONDS
from controller.settings import ENV_PREFIX, ControllerSettings

logger = logging.getLogger(__name__)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fleetconf-controller",
        description="The fleetconf controller. Settings come from CONTROLLER_* variables.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve the API (default), or bring the database schema up to date and exit",
    )
    parser.add_argument("--env-file", type=Path, help="read settings from this env file too")
    return parser.parse_args(argv)


def load_settings(env_file: Path | None) -> ControllerSettings:
    try:
        return ControllerSettings(_env_file=env_file)
    except ValidationError as exc:
        sys.exit(describe_settings_error(exc, ENV_PREFIX))


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    settings = load_settings(args.env_file)
    configure_logging(settings.log_level)
    if args.command == "migrate" or settings.migrate_on_start:
        logger.info("migrations.upgrade database=%s", _safe_url(settings.database_url))
        migrations.upgrade(settings.database_url)
    if args.command == "migrate":
        return
    logger.info("controller.starting host=%s port=%d", settings.host, settings.port)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
        print=None,
        access_log=None,
    )


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
