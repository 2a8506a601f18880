"""``fleetconf-controller``: serve the API (the default) or run the migrations."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from common.cli import load_settings, parse_service_args, service_parser
from common.logs import configure_logging
from common.redact import redact_url
from controller import migrations
from controller.serving import serve_alone
from controller.settings import ENV_PREFIX, ControllerSettings
from controller.workers import Workers

logger = logging.getLogger(__name__)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = service_parser(
        prog="fleetconf-controller",
        description="The fleetconf controller: versions the configuration, serves the fleet.",
        env_prefix=ENV_PREFIX,
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "migrate"],
        help="serve the API (default), or bring the database schema up to date and exit",
    )
    return parse_service_args(parser, argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    settings = load_settings(ControllerSettings, args.env_file, ENV_PREFIX)
    configure_logging(settings.log_level)
    if args.command == "migrate" or settings.migrate_on_start:
        database_url = settings.database_url.get_secret_value()
        logger.info("migrations.upgrade database=%s", redact_url(database_url))
        migrations.upgrade(database_url)
    if args.command == "migrate":
        return
    logger.info(
        "controller.starting host=%s port=%d workers=%d event_loop=%s",
        settings.host,
        settings.port,
        settings.workers,
        settings.event_loop,
    )
    if settings.workers == 1:
        serve_alone(settings)
        return
    # The migrations above ran once, in this process; the workers only serve.
    status = Workers(settings).run()
    if status != 0:
        raise SystemExit(status)
