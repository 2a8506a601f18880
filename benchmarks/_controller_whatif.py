"""Run the controller with benchmark-only patches, to estimate the gain of a proposed fix.

    FLEETCONF_BENCH_WHATIF="token_cache=3600,pool=30,no_pre_ping" python benchmarks/_controller_whatif.py

Nothing here changes the services' code on disk; the patches live in this process only.
  token_cache=S   AgentTokens trusts a verified agent token for S seconds (code: 5 s)
  pool=N          PostgreSQL pool_size=N, max_overflow=0 (code: 10 + 10 overflow)
  no_pre_ping     pool_pre_ping=False (code: True, one extra round trip per checkout)
  fixed_spread    the hint spread before it followed the measured service rate: fleet size
                  / CONTROLLER_HINT_FETCH_RATE_PER_SECOND, whatever the replica can serve
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controller import app as controller_app
from controller import credentials, db, hints
from controller.main import main


def fixed_spread(
    fleet_size: int, fetch_rate_per_second: float, served_per_second: float | None = None
) -> float:
    """The spread as it was up to the adaptive one (the measured rate is ignored)."""
    return round(min(hints.MAX_SPREAD_SECONDS, fleet_size / fetch_rate_per_second), 3)


def apply(spec: str) -> None:
    pool_kwargs: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, value = item.partition("=")
        if name == "token_cache":
            defaults: dict[str, Any] | None = credentials.AgentTokens.__init__.__kwdefaults__
            assert defaults is not None
            defaults["cache_seconds"] = float(value)
        elif name == "pool":
            pool_kwargs.update(pool_size=int(value), max_overflow=0)
        elif name == "no_pre_ping":
            pool_kwargs["pool_pre_ping"] = False
        elif name == "fixed_spread":
            hints.spread_seconds = fixed_spread
        else:
            raise SystemExit(f"unknown what-if {item!r}")
    if pool_kwargs:
        original = db.create_engine

        def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
            if db.is_sqlite(url):
                return original(url)
            kwargs = {
                "pool_size": pool_size,
                "max_overflow": max_overflow,
                "pool_pre_ping": True,
                **pool_kwargs,
            }
            return create_async_engine(url, **kwargs)

        # controller.app calls the name it imported from controller.db.
        controller_app.create_engine = create_engine  # type: ignore[attr-defined]


if __name__ == "__main__":
    apply(os.environ.get("FLEETCONF_BENCH_WHATIF", ""))
    main([])
