"""The registration rate limit per client address."""

from __future__ import annotations

import pytest

from common.errors import TooManyRequests
from controller.ratelimit import RateLimiter
from tests.controller.conftest import REGISTRATION, ClientFactory


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate() -> None:
    """An address gets its burst at once, then one more per 1/rate seconds."""
    clock = Clock()
    limiter = RateLimiter(rate_per_second=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.check("10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        limiter.check("10.0.0.1")
    assert refused.value.headers["Retry-After"] == "1"
    limiter.check("10.0.0.2")  # another address has its own bucket
    clock.now += 0.5
    limiter.check("10.0.0.1")


def test_idle_buckets_are_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory stays bounded: full, idle buckets are dropped when many addresses came by."""
    monkeypatch.setattr("controller.ratelimit.SWEEP_AFTER_ADDRESSES", 10)
    clock = Clock()
    limiter = RateLimiter(rate_per_second=1, burst=1, clock=clock)
    for n in range(10):
        limiter.check(f"10.0.0.{n}")
    clock.now += 5
    limiter.check("10.0.1.1")
    assert len(limiter._buckets) == 1


async def test_register_answers_429_with_retry_after(make_client: ClientFactory) -> None:
    """Past the burst, POST /register is 429 problem+json with Retry-After; nothing stored."""
    client = await make_client(registration_burst=2, registration_rate_per_second=0.1)
    for n in range(2):
        ok = await client.post("/register", json={"hostname": f"h{n}"}, headers=REGISTRATION)
        assert ok.status == 201
    refused = await client.post("/register", json={"hostname": "h3"}, headers=REGISTRATION)
    assert refused.status == 429
    assert refused.content_type == "application/problem+json"
    assert int(refused.headers["Retry-After"]) == 10
    listing = await client.get("/agents", headers={"Authorization": "Bearer admin-token-for-tests"})
    assert (await listing.json())["total"] == 2
