"""The hint seam: a hint only wakes the controller loop early."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import redis.asyncio as redis
from aiohttp.test_utils import TestServer

from agent.hints import HintsState, HintSubscriber, NullHintSubscriber
from agent.runner import Agent
from common.hints import Hint
from tests.agent.conftest import (
    Controller,
    MakeSettings,
    StartController,
    base_url,
    eventually,
    running_agent,
    worker_reaches,
)


class QueuedHints:
    """A hint source the test feeds by hand, with the real subscriber's interface."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[int] = asyncio.Queue()

    async def run(self, on_hint: Callable[[Hint], None], on_connected: Callable[[], None]) -> None:
        on_connected()
        while True:
            on_hint(Hint(version=await self.queue.get(), poll_interval_seconds=3600))


async def test_null_subscriber_waits_until_cancelled() -> None:
    """NullHintSubscriber never calls back and ends only when cancelled."""
    called: list[Hint] = []
    subscriber: HintSubscriber = NullHintSubscriber()
    task = asyncio.create_task(subscriber.run(called.append, lambda: None))
    await asyncio.sleep(0.05)  # the behaviour under test: nothing happens meanwhile
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert called == []


async def test_hint_wakes_the_controller_loop(
    make_settings: MakeSettings, controller: Controller, worker: TestServer
) -> None:
    """Without long polls, with an hour-long poll interval, a hint brings a new version to
    the worker at once."""
    await controller.set_poll_interval(3600)
    hints = QueuedHints()
    settings = make_settings(
        controller_url=controller.url, worker_url=base_url(worker), long_poll=False
    )
    agent = Agent(settings, hints=hints)
    async with running_agent(agent):
        await eventually(lambda: len(controller.polls()) == 1, timeout_seconds=10)
        assert agent.poll_interval_seconds == 3600
        version = await controller.publish("https://example.org/hinted")
        hints.queue.put_nowait(version)

        await worker_reaches(worker, version, timeout_seconds=10)
        # The apply is then confirmed at once: one conditional poll, answered 304.
        await eventually(lambda: len(controller.polls()) == 3, timeout_seconds=1.0)
    assert [s.status for s in controller.polls()] == [200, 200, 304]


async def test_redis_hint_from_the_registration_answer(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    redis_url: str,
    hint_channel: str,
) -> None:
    """Without long polls, an agent told of Redis at registration gets a change at once,
    not after an hour."""
    controller = await start_controller(redis_url=redis_url, hint_channel=hint_channel)
    await controller.set_poll_interval(3600)
    settings = make_settings(
        controller_url=controller.url, worker_url=base_url(worker), long_poll=False
    )
    agent = Agent(settings)
    async with running_agent(agent):
        await eventually(lambda: agent.identity is not None, timeout_seconds=10)
        assert agent.identity is not None
        assert agent.identity.hints_channel == hint_channel
        await eventually(lambda: agent.hints_state is HintsState.CONNECTED, timeout_seconds=10)
        version = await controller.publish("https://example.org/via-redis")

        await worker_reaches(worker, version, timeout_seconds=5)


async def test_duplicate_hints_coalesce_into_one_fetch(
    make_settings: MakeSettings, controller: Controller, worker: TestServer
) -> None:
    """Without long polls, a burst of hints for one version, within the spread, costs one
    extra poll."""
    await controller.set_poll_interval(3600)
    hints = QueuedHints()
    settings = make_settings(
        controller_url=controller.url, worker_url=base_url(worker), long_poll=False
    )
    agent = Agent(settings, hints=hints)
    async with running_agent(agent):
        await eventually(lambda: len(controller.polls()) == 1, timeout_seconds=10)
        version = await controller.publish("https://example.org/burst")
        for _ in range(20):
            hints.queue.put_nowait(version)

        await worker_reaches(worker, version, timeout_seconds=10)
        # The behaviour under test is that no further fetch follows: a quiet window in
        # which any of the other 19 hints would have cost a poll.
        await asyncio.sleep(0.3)
    assert len(controller.polls()) <= 3


FORGED_HINTS = [
    b'{"version": 2147483647, "poll_interval_seconds": 30}',
    b'{"version": 2147483647, "poll_interval_seconds": 1, "spread_seconds": 0}',
    b'{"version": 2147483648, "poll_interval_seconds": 30}',
    b'{"version": -1, "poll_interval_seconds": 30}',
    b'{"version": true, "poll_interval_seconds": 30}',
    b'{"version": 5, "poll_interval_seconds": 30, "spread_seconds": NaN}',
    b'{"version": 5, "poll_interval_seconds": 0}',
    b"not json",
    b"\xff" * 4096,
    b"[" * 5000,
]


async def test_forged_hints_on_real_redis_cost_a_bounded_few_polls(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    redis_url: str,
    hint_channel: str,
) -> None:
    """Without long polls, forged messages published on Redis (a never-coming version,
    junk, bad ranges) cost the agent at most three extra polls, leave its poll interval
    alone and its loops running: a real change still arrives by hint afterwards."""
    controller = await start_controller(redis_url=redis_url, hint_channel=hint_channel)
    await controller.set_poll_interval(30)
    settings = make_settings(
        controller_url=controller.url, worker_url=base_url(worker), long_poll=False
    )
    agent = Agent(settings)
    task = asyncio.create_task(agent.run())
    publisher = redis.Redis.from_url(redis_url)
    try:
        await eventually(lambda: agent.hints_state is HintsState.CONNECTED, timeout_seconds=10)
        # The first poll may come after the subscription: it is not one the hints cost.
        await eventually(lambda: len(controller.polls()) >= 1, timeout_seconds=10)
        polls_before = len(controller.polls())
        for _ in range(3):
            for message in FORGED_HINTS:
                await publisher.publish(hint_channel, message)
        # The hinted fetch and the re-checks at 0.25 s and 1.0 s end with the hint given up.
        await eventually(lambda: agent.hint_schedule.given_up >= 1, timeout_seconds=10)
        assert len(controller.polls()) - polls_before <= 3
        assert agent.poll_interval_seconds == 30
        assert agent.hint_schedule.given_up == 1
        assert agent.hints_state is HintsState.CONNECTED
        version = await controller.publish("https://example.org/after-forgeries")

        await worker_reaches(worker, version, timeout_seconds=5)
    finally:
        await publisher.aclose()
        await agent.stop()
        await task


async def test_an_agent_whose_polls_are_held_does_not_subscribe(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    redis_url: str,
    hint_channel: str,
) -> None:
    """With long polls (the default) against a controller that holds them, the agent
    needs no hints: it does not subscribe (hints state "held"), so forged messages on
    Redis reach nothing, and a real change arrives at once on the held poll."""
    controller = await start_controller(redis_url=redis_url, hint_channel=hint_channel)
    await controller.set_poll_interval(30)
    await controller.publish("https://example.org/first")
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    agent = Agent(settings)
    task = asyncio.create_task(agent.run())
    publisher = redis.Redis.from_url(redis_url)
    try:
        # The first poll fetches the configuration; the second confirms it and is held.
        await eventually(lambda: len(controller.polls()) == 2, timeout_seconds=10)
        assert agent.hints_state is HintsState.HELD
        # The controller's own subscription is the channel's only one.
        assert await publisher.pubsub_numsub(hint_channel) == [(hint_channel.encode(), 1)]
        for _ in range(3):
            for message in FORGED_HINTS:
                await publisher.publish(hint_channel, message)
        await asyncio.sleep(1.0)
        assert [s.status for s in controller.polls()] == [200, None]
        version = await controller.publish("https://example.org/after-forgeries")

        await worker_reaches(worker, version, timeout_seconds=5)
        assert [s.status for s in controller.polls()][:2] == [200, 200]
        assert agent.hints_state is HintsState.HELD
    finally:
        await publisher.aclose()
        await agent.stop()
        await task


async def test_an_agent_subscribes_once_a_poll_is_not_held(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    redis_url: str,
    hint_channel: str,
) -> None:
    """A controller that holds no polls (CONTROLLER_POLL_WAIT_MAX_SECONDS=0) answers the
    first poll that asks to wait at once: the agent then subscribes, and a change arrives
    by hint, not after an hour."""
    controller = await start_controller(
        redis_url=redis_url, hint_channel=hint_channel, poll_wait_max_seconds=0
    )
    await controller.set_poll_interval(3600)
    await controller.publish("https://example.org/first")
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    agent = Agent(settings)
    async with running_agent(agent):
        await eventually(lambda: agent.hints_state is HintsState.CONNECTED, timeout_seconds=10)
        assert controller.polls()[-1].headers["Prefer"] == "wait=3600"
        version = await controller.publish("https://example.org/by-hint")

        await worker_reaches(worker, version, timeout_seconds=5)
