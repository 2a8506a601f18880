"""``fleetconf-agent`` / ``python -m agent``: read the settings, configure logging, run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from agent.constants import ENV_PREFIX
from agent.runner import Agent
from agent.settings import AgentSettings
from common.logs import configure_logging
from common.settings import describe_settings_error

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the agent until SIGTERM or SIGINT; exit 2 on invalid settings, 1 on a bad state dir."""
    args = _parse_args(argv)
    settings = _load_settings(args.env_file)
    configure_logging(settings.log_level)
    try:
        asyncio.run(_serve(settings))
    except OSError as exc:
        logger.error("agent.state_unusable state_dir=%s error=%s", settings.state_dir, exc)
        raise SystemExit(1) from None


async def _serve(settings: AgentSettings) -> None:
    agent = Agent(settings)
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, _on_signal, agent, signum)
    try:
        await agent.run()
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _on_signal(agent: Agent, signum: signal.Signals) -> None:
    logger.info("agent.stop_requested signal=%s", signum.name)
    agent.request_stop()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fleetconf-agent",
        description="Fetch the configuration from the controller and keep the worker in step. "
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


def _load_settings(env_file: Path | None) -> AgentSettings:
    try:
        return AgentSettings(_env_file=env_file)
    except ValidationError as exc:
        print(describe_settings_error(exc, ENV_PREFIX), file=sys.stderr)
        raise SystemExit(2) from None
