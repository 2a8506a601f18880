"""Typed keys for what the worker keeps on its ``web.Application``."""

from __future__ import annotations

from typing import Final

import aiohttp
from aiohttp import web

from worker.hit_counts import HitCounts
from worker.hit_gate import HitGate
from worker.metrics import WorkerMetrics
from worker.settings import WorkerSettings
from worker.store import ConfigStore

SETTINGS_KEY: Final = web.AppKey("settings", WorkerSettings)
CONFIG_STORE_KEY: Final = web.AppKey("config_store", ConfigStore)
CLIENT_SESSION_KEY: Final = web.AppKey("client_session", aiohttp.ClientSession)
METRICS_KEY: Final = web.AppKey("metrics", WorkerMetrics)
HIT_COUNTS_KEY: Final = web.AppKey("hit_counts", HitCounts)
HIT_GATE_KEY: Final = web.AppKey("hit_gate", HitGate)
