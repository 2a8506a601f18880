"""Typed keys for what the controller keeps on its aiohttp application."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from common.hints import HintSubscription
from controller.cache import ConfigCache
from controller.credentials import AgentTokens, Authenticator
from controller.hints import HintPublisher
from controller.ledger import Ledger
from controller.ratelimit import RateLimiter
from controller.settings import ControllerSettings

if TYPE_CHECKING:
    # controller.metrics reads the app through these keys.
    from controller.metrics import ControllerMetrics

SETTINGS = web.AppKey("settings", ControllerSettings)
ENGINE = web.AppKey("engine", AsyncEngine)
CACHE = web.AppKey("cache", ConfigCache)
LEDGER = web.AppKey("ledger", Ledger)
AGENT_TOKENS = web.AppKey("agent_tokens", AgentTokens)
AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
PUBLISHER = web.AppKey("publisher", HintPublisher)
HINT_SUBSCRIPTION = web.AppKey("hint_subscription", HintSubscription)
WRITE_LOCK = web.AppKey("write_lock", asyncio.Lock)
REGISTRATION_LIMITER = web.AppKey("registration_limiter", RateLimiter)
METRICS: web.AppKey[ControllerMetrics] = web.AppKey("metrics")
