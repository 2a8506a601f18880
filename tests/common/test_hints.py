"""Hints on real Redis: the message, and a subscription that survives Redis going away."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
import redis.asyncio as redis
from hypothesis import given, settings
from hypothesis import strategies as st

from common.backoff import Backoff
from common.constants import (
    MAX_CONFIG_VERSION,
    MAX_POLL_INTERVAL_SECONDS,
    MIN_POLL_INTERVAL_SECONDS,
)
from common.hints import (
    MAX_HINT_SPREAD_SECONDS,
    Hint,
    HintSubscription,
    decode_hint,
    encode_hint,
    subscriber_client,
)
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import eventually


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"nonsense",
        b"[]",
        b'{"version": -1, "poll_interval_seconds": 5}',
        b'{"version": 1}',
        b'{"version": "x", "poll_interval_seconds": 5}',
        b"{" * 2000,
    ],
)
def test_malformed_hints_are_dropped(payload: bytes) -> None:
    """Anything that is not a valid hint decodes to None."""
    assert decode_hint(payload) is None


def test_hint_round_trip() -> None:
    """A hint survives encoding; unknown fields from newer controllers are ignored."""
    hint = Hint(version=3, poll_interval_seconds=30, spread_seconds=0.25)
    assert decode_hint(encode_hint(hint)) == hint
    assert decode_hint(b'{"version": 3, "poll_interval_seconds": 30, "new": 1}') == Hint(
        version=3, poll_interval_seconds=30
    )


@contextlib.asynccontextmanager
async def _subscribed(  # type: ignore[no-untyped-def]
    url: str,
    channel: str,
    received: list[Hint],
    connects: list[int],
    backoff: Backoff | None = None,
):
    client = subscriber_client(url)
    subscription = HintSubscription(
        client,
        channel,
        on_hint=received.append,
        on_connected=lambda: connects.append(1),
        backoff=backoff or Backoff(base_seconds=0.05, max_seconds=0.2),
    )
    task = asyncio.create_task(subscription.run())
    try:
        await eventually(lambda: subscription.connected)
        yield subscription
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def test_subscription_delivers_valid_hints_only(redis_url: str, hint_channel: str) -> None:
    """Published hints arrive in order; a forged, malformed message is dropped and counted."""
    received: list[Hint] = []
    async with _subscribed(redis_url, hint_channel, received, []) as subscription:
        publisher = redis.Redis.from_url(redis_url)
        try:
            await publisher.publish(hint_channel, "not a hint")
            for version in (1, 2):
                await publisher.publish(
                    hint_channel, encode_hint(Hint(version=version, poll_interval_seconds=5))
                )
            await eventually(lambda: len(received) == 2)
        finally:
            await publisher.aclose()
        assert [h.version for h in received] == [1, 2]
        assert subscription.dropped == 1


async def test_subscription_survives_redis_restart(
    private_redis: PrivateRedis, hint_channel: str
) -> None:
    """When Redis dies and comes back, the subscription reconnects and hears new hints."""
    received: list[Hint] = []
    connects: list[int] = []
    backoff = Backoff(base_seconds=0.05, max_seconds=0.2)
    async with _subscribed(
        private_redis.url, hint_channel, received, connects, backoff
    ) as subscription:
        private_redis.kill()
        await eventually(lambda: not subscription.connected)
        # A few failed reconnection attempts while it is down.
        await eventually(lambda: backoff.failures >= 3)
        private_redis.start()
        await eventually(lambda: subscription.connected and len(connects) == 2)
        publisher = redis.Redis.from_url(private_redis.url)
        try:
            await publisher.publish(
                hint_channel, encode_hint(Hint(version=9, poll_interval_seconds=5))
            )
        finally:
            await publisher.aclose()
        await eventually(lambda: [h.version for h in received] == [9])


@pytest.mark.parametrize(
    "payload",
    [
        b'{"version": 2147483648, "poll_interval_seconds": 30}',
        b'{"version": 1e300, "poll_interval_seconds": 30}',
        b'{"version": 4.0, "poll_interval_seconds": 30}',
        b'{"version": true, "poll_interval_seconds": 30}',
        b'{"version": "4", "poll_interval_seconds": 30}',
        b'{"version": 4, "poll_interval_seconds": 0}',
        b'{"version": 4, "poll_interval_seconds": 86401}',
        b'{"version": 4, "poll_interval_seconds": false}',
        b'{"version": 4, "poll_interval_seconds": 30, "spread_seconds": -1}',
        b'{"version": 4, "poll_interval_seconds": 30, "spread_seconds": NaN}',
        b'{"version": 4, "poll_interval_seconds": 30, "spread_seconds": Infinity}',
        b'{"version": 4, "poll_interval_seconds": 30, "spread_seconds": 1e309}',
        b'{"version": 4, "poll_interval_seconds": 30, "spread_seconds": 3601}',
        b'{"version": 4, "poll_interval_seconds": 30, "pad": "' + b"x" * 1024 + b'"}',
        b"\xff\xfe\x00",
        b"[" * 100_000,
    ],
)
def test_out_of_range_hints_are_dropped(payload: bytes) -> None:
    """Versions beyond MAX_CONFIG_VERSION, non-integers, bad intervals or spreads and
    oversized messages decode to None."""
    assert decode_hint(payload) is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
_hint_like = st.fixed_dictionaries(
    {},
    optional={
        "version": _json | st.integers(),
        "poll_interval_seconds": _json | st.integers(),
        "spread_seconds": _json | st.floats(allow_nan=True, allow_infinity=True),
    },
)


@settings(max_examples=300, deadline=None)
@given(
    payload=st.one_of(
        st.binary(max_size=2048),
        st.text(max_size=2048),
        _json.map(lambda v: json.dumps(v)),
        _hint_like.map(lambda v: json.dumps(v)),
    )
)
def test_any_payload_decodes_to_a_valid_hint_or_none(payload: bytes | str) -> None:
    """decode_hint never raises, and what it returns is within every range."""
    hint = decode_hint(payload)
    if hint is not None:
        assert 0 <= hint.version <= MAX_CONFIG_VERSION
        assert type(hint.version) is int
        assert type(hint.poll_interval_seconds) is int
        assert hint.poll_interval_seconds >= MIN_POLL_INTERVAL_SECONDS
        assert hint.poll_interval_seconds <= MAX_POLL_INTERVAL_SECONDS
        assert 0.0 <= hint.spread_seconds <= MAX_HINT_SPREAD_SECONDS


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(
        st.one_of(
            st.binary(max_size=64),
            _hint_like.map(lambda v: json.dumps(v).encode()),
            st.none(),
            st.integers(),
        ),
        max_size=20,
    )
)
async def test_no_message_breaks_the_delivery_path(messages: list[object]) -> None:
    """Every message fed to a subscription's delivery path is delivered or dropped, even
    when the receiver raises: nothing escapes to end the subscription."""
    delivered: list[Hint] = []

    def on_hint(hint: Hint) -> None:
        delivered.append(hint)
        raise RuntimeError("a receiver that fails")

    subscription = HintSubscription(
        redis.Redis.from_url("redis://127.0.0.1:1/0"), "c", on_hint=on_hint
    )
    for message in messages:
        await subscription._deliver(message)
    assert subscription.received + subscription.dropped == len(messages)
    assert subscription.failed == len(delivered) == subscription.received


def test_a_cohort_hint_round_trips_and_a_malformed_cohort_is_dropped() -> None:
    """A staged rollout's hint carries its rollout id and threshold; a cohort that is not
    a UUID and a 63-bit threshold makes the whole message malformed."""
    from common.hints import HintCohort

    cohort = HintCohort(rollout="5b0c7d1e-2f4a-4c8e-9a71-0d3e5f6a7b8c", threshold=2**63 - 1)
    hint = Hint(version=9, poll_interval_seconds=30, cohort=cohort)
    assert decode_hint(encode_hint(hint)) == hint
    for bad in (
        '{"version": 9, "poll_interval_seconds": 30, "cohort": {"rollout": "x", "threshold": 1}}',
        '{"version": 9, "poll_interval_seconds": 30, "cohort": {"rollout": '
        '"5b0c7d1e-2f4a-4c8e-9a71-0d3e5f6a7b8c", "threshold": 9223372036854775808}}',
        '{"version": 9, "poll_interval_seconds": 30, "cohort": {"rollout": '
        '"5b0c7d1e-2f4a-4c8e-9a71-0d3e5f6a7b8c", "threshold": "1"}}',
    ):
        assert decode_hint(bad) is None
