"""Typed keys for what the agent's status server keeps on its ``web.Application``."""

from __future__ import annotations

from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.runner import Agent
from agent.settings import AgentSettings

AGENT_KEY: Final = web.AppKey("agent", Agent)
SETTINGS_KEY: Final = web.AppKey("settings", AgentSettings)
REGISTRY_KEY: Final = web.AppKey("registry", CollectorRegistry)
