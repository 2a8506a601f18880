"""Exponential backoff with full jitter: sleep = random(0, min(cap, base * 2**attempt))."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(kw_only=True)
class Backoff:
    """Delays for consecutive failures of one operation; ``reset()`` after a success."""

    base_seconds: float
    max_seconds: float
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def ceiling_seconds(self) -> float:
        """The upper bound of the next delay."""
        exponent = min(self.failures, 62)
        return float(min(self.max_seconds, self.base_seconds * (2**exponent)))

    def next_delay_seconds(self) -> float:
        """Record one more failure and return how long to wait before the next try."""
        delay = self.rng.uniform(0.0, self.ceiling_seconds())
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
