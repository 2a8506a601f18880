"""A token bucket per client address, for ``POST /register``.

Each address may register ``burst`` agents at once and then ``rate_per_second`` more per
second; beyond that the answer is 429 with ``Retry-After``, which agents honour. The
buckets live in memory, per replica; idle full buckets are dropped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from common.errors import TooManyRequests

# How many addresses are remembered before full, idle buckets are swept.
SWEEP_AFTER_ADDRESSES = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self,
        *,
        rate_per_second: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate_per_second
        self._burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, address: str) -> None:
        """Take one token for ``address``, or raise 429 saying when to come back."""
        now = self._clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= SWEEP_AFTER_ADDRESSES:
                self._sweep(now)
            bucket = self._buckets[address] = _Bucket(tokens=self._burst, updated=now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait_seconds = math.ceil((1.0 - bucket.tokens) / self._rate)
        raise TooManyRequests(
            f"Too many registrations from {address}; retry in {wait_seconds} s.",
            retry_after_seconds=wait_seconds,
        )

    def _sweep(self, now: float) -> None:
        full_after = self._burst / self._rate
        self._buckets = {
            address: bucket
            for address, bucket in self._buckets.items()
            if now - bucket.updated < full_after
        }
