"""Typed keys for what the controller keeps on its aiohttp application."""

from __future__ import annotations

import asyncio
from typing import Final

from aiohttp import web

from common.hints import HintSubscription
from common.supervision import Supervisor
from controller.addresses import ClientAddresses
from controller.cache import ConfigCache
from controller.credentials import AgentTokens, Authenticator
from controller.db import Database
from controller.fleet_counts import FleetCountsCache
from controller.fleet_queries import FleetQueries
from controller.hints import HintPublisher
from controller.ledger import Ledger
from controller.metrics import ControllerMetrics
from controller.named_credentials import NamedCredentials
from controller.ratelimit import RateLimiter
from controller.registration_batch import RegistrationBatcher
from controller.settings import ControllerSettings
from controller.staged_driver import StagedDriver
from controller.staged_view import StagedFollower
from controller.throttle import FailureThrottle
from controller.watches import Watches

SETTINGS: Final = web.AppKey("settings", ControllerSettings)
DATABASE: Final = web.AppKey("database", Database)
CACHE: Final = web.AppKey("cache", ConfigCache)
LEDGER: Final = web.AppKey("ledger", Ledger)
FLEET: Final = web.AppKey("fleet", FleetQueries)
AGENT_TOKENS: Final = web.AppKey("agent_tokens", AgentTokens)
NAMED_CREDENTIALS: Final = web.AppKey("named_credentials", NamedCredentials)
AUTHENTICATOR: Final = web.AppKey("authenticator", Authenticator)
PUBLISHER: Final = web.AppKey("publisher", HintPublisher)
HINT_SUBSCRIPTION: Final = web.AppKey("hint_subscription", HintSubscription)
WRITE_LOCK: Final = web.AppKey("write_lock", asyncio.Lock)
REGISTRATION_LIMITER: Final = web.AppKey("registration_limiter", RateLimiter)
REGISTRATIONS: Final = web.AppKey("registrations", RegistrationBatcher)
METRICS: Final = web.AppKey("metrics", ControllerMetrics)
SUPERVISOR: Final = web.AppKey("supervisor", Supervisor)
CLIENT_ADDRESSES: Final = web.AppKey("client_addresses", ClientAddresses)
AUTH_THROTTLE: Final = web.AppKey("auth_throttle", FailureThrottle)
FLEET_COUNTS: Final = web.AppKey("fleet_counts", FleetCountsCache)
# Which of the CONTROLLER_WORKERS processes serves this app: 0, 1, ...
WORKER_INDEX: Final = web.AppKey("worker_index", int)
STAGED_DRIVER: Final = web.AppKey("staged_driver", StagedDriver)
STAGED_FOLLOWER: Final = web.AppKey("staged_follower", StagedFollower)
WATCHES: Final = web.AppKey("watches", Watches)
