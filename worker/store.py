"""The configuration this worker holds, and the rule for replacing it."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property

from common.errors import Conflict, PreconditionFailed
from common.models import DEFAULT_WORKER_CONFIG, WorkerConfig
from common.redact import redact_url
from worker.constants import ETAG_DIGEST_HEX_DIGITS

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class HeldConfig:
    """One version of the configuration."""

    version: int
    config: WorkerConfig
    # When this worker took it (time.monotonic()); the start, for version 0.
    held_since: float = field(default_factory=time.monotonic, compare=False)

    @cached_property
    def etag(self) -> str:
        """A strong entity tag naming exactly this version and content."""
        return etag_of(self.version, self.config)


def etag_of(version: int, config: WorkerConfig) -> str:
    """``"<version>-<first 16 hex digits of the SHA-256 of the canonical JSON>"``."""
    canonical = json.dumps(
        config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:ETAG_DIGEST_HEX_DIGITS]
    return f'"{version}-{digest}"'


class ConfigStore:
    """The held configuration; starts at version 0 with ``{"url": null}``.

    Without a precondition, versions only move forward, so a delayed or reordered POST
    cannot roll a worker back. With one (the held configuration's ETag, as the agent sends
    it), any version may replace the held one: the writer has seen exactly what it replaces.
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

    def apply(self, version: int, config: WorkerConfig, *, if_match: str | None = None) -> bool:
        """Hold ``config`` as ``version``; True if that changed anything.

        With ``if_match``, replace whatever is held if ``if_match`` is its ETag, and raise
        PreconditionFailed otherwise (``*`` included). Without it, raise Conflict for a
        version older than the one held, or for the held version with another
        configuration. A refusal changes nothing.
        """
        if if_match is not None:
            return self._replace(version, config, if_match)
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
        self._hold(version, config)
        return True

    def _replace(self, version: int, config: WorkerConfig, if_match: str) -> bool:
        """The compare-and-set: hold ``config`` if ``if_match`` names what is held."""
        held = self._held
        if if_match.strip() != held.etag:
            self.refused += 1
            raise PreconditionFailed(f"If-Match does not name the held configuration {held.etag}.")
        if version == held.version and config == held.config:
            self.unchanged += 1
            logger.debug("config.unchanged version=%d", version)
            return False
        logger.info(
            "config.replaced version=%d previous_version=%d: If-Match named the held one",
            version,
            held.version,
        )
        self._hold(version, config)
        return True

    def _hold(self, version: int, config: WorkerConfig) -> None:
        self.applied += 1
        self._held = HeldConfig(version=version, config=config)
        logger.info(
            "config.applied version=%d url=%s",
            version,
            redact_url(config.url) if config.url else None,
        )
