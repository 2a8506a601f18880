"""What the three commands share: ``--env-file`` and turning bad settings into exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from common.settings import describe_settings_error

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def service_parser(*, prog: str, description: str, env_prefix: str) -> argparse.ArgumentParser:
    """An argument parser with the ``--env-file`` option every service takes."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"{description} Settings come from {env_prefix}* environment variables.",
    )
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="PATH",
        help=f"read {env_prefix}* settings from this file too (the environment wins)",
    )
    return parser


def parse_service_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if args.env_file is not None and not args.env_file.is_file():
        parser.error(f"--env-file {args.env_file}: no such file")
    return args


def load_settings(
    settings_class: type[SettingsT], env_file: Path | None, env_prefix: str
) -> SettingsT:
    """The service's settings; invalid ones are printed, one line each, and exit 2."""
    try:
        return settings_class(_env_file=env_file)
    except ValidationError as exc:
        print(describe_settings_error(exc, env_prefix), file=sys.stderr)
        raise SystemExit(2) from None
