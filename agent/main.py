"""``fleetconf-agent`` / ``python -m agent``: read the settings, configure logging, run."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

from agent.constants import ENV_PREFIX
from agent.runner import Agent
from agent.settings import AgentSettings
from agent.status import StatusServerUnavailable, status_server
from common.cli import load_settings, parse_service_args, service_parser
from common.event_loop import loop_factory
from common.logs import configure_logging

logger = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the agent until SIGTERM or SIGINT; exit 2 on invalid settings, 1 on a bad state
    dir or a status port that cannot be bound."""
    parser = service_parser(
        prog="fleetconf-agent",
        description="Fetch the configuration from the controller and keep the worker in step.",
        env_prefix=ENV_PREFIX,
    )
    args = parse_service_args(parser, argv)
    settings = load_settings(AgentSettings, args.env_file, ENV_PREFIX)
    configure_logging(settings.log_level)
    try:
        with asyncio.Runner(loop_factory=loop_factory(settings.event_loop)) as runner:
            runner.run(_serve(settings))
    except StatusServerUnavailable as exc:
        logger.error(
            "agent.status_server_failed %s: set %sSTATUS_PORT to a free port, or to nothing "
            "to run without the status server",
            exc,
            ENV_PREFIX,
        )
        raise SystemExit(1) from None
    except OSError as exc:
        logger.error("agent.state_unusable state_dir=%s error=%s", settings.state_dir, exc)
        raise SystemExit(1) from None


async def _serve(settings: AgentSettings) -> None:
    agent = Agent(settings)
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, _on_signal, agent, signum)
    try:
        async with status_server(agent, settings):
            await agent.run()
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _on_signal(agent: Agent, signum: signal.Signals) -> None:
    logger.info("agent.stop_requested signal=%s", signum.name)
    agent.request_stop()
