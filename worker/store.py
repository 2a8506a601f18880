"""The configuration this worker holds, and the rule for replacing it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from common.errors import Conflict
from common.models import DEFAULT_WORKER_CONFIG, WorkerConfig
from common.redact import redact_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class HeldConfig:
    """One version of the configuration."""

    version: int
    config: WorkerConfig
    # When this worker took it (time.monotonic()); the start, for version 0.
    held_since: float = field(default_factory=time.monotonic, compare=False)


class ConfigStore:
    """The held configuration; starts at version 0 with ``{"url": null}``.

    Versions only move forward, so a delayed or reordered POST cannot roll a worker back.
    """

    def __init__(self) -> None:
        self._held = HeldConfig(version=0, config=DEFAULT_WORKER_CONFIG)
        # What became of each update: a newer version held, the held one again, or refused.
        self.applied = 0
        self.unchanged = 0
        self.refused = 0

    @property
    def held(self) -> HeldConfig:
        return self._held

    def apply(self, version: int, config: WorkerConfig) -> bool:
        """Hold ``config`` as ``version``; True if that changed anything.

        Raises Conflict (and changes nothing) for a version older than the one held, or
        for the held version with a different configuration.
        """
        held = self._held
        if version < held.version:
            self.refused += 1
            raise Conflict(f"Version {version} is older than the held version {held.version}.")
        if version == held.version:
            if config != held.config:
                self.refused += 1
                raise Conflict(f"Version {version} is already held with a different configuration.")
            self.unchanged += 1
            logger.debug("config.unchanged version=%d", version)
            return False
        self.applied += 1
        self._held = HeldConfig(version=version, config=config)
        logger.info(
            "config.applied version=%d url=%s",
            version,
            redact_url(config.url) if config.url else None,
        )
        return True
