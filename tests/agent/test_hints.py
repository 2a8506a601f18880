"""The hint seam: a hint only wakes the controller loop early."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp.test_utils import TestServer

from agent.hints import HintSubscriber, NullHintSubscriber
from agent.runner import Agent
from tests.agent.conftest import Controller, MakeSettings, base_url, eventually, worker_holds


class QueuedHints:
    """A hint source the test feeds by hand (Redis hints come in a later issue)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[int] = asyncio.Queue()

    async def run(self, on_hint: Callable[[int], None]) -> None:
        while True:
            on_hint(await self.queue.get())


async def test_null_subscriber_waits_until_cancelled() -> None:
    """NullHintSubscriber never calls back and ends only when cancelled."""
    called: list[int] = []
    subscriber: HintSubscriber = NullHintSubscriber()
    task = asyncio.create_task(subscriber.run(called.append))
    await asyncio.sleep(0.05)
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert called == []


async def test_hint_wakes_the_controller_loop(
    make_settings: MakeSettings, controller: Controller, worker: TestServer
) -> None:
    """With an hour-long poll interval, a hint brings a new version to the worker at once."""
    await controller.set_poll_interval(3600)
    hints = QueuedHints()
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    agent = Agent(settings, hints=hints)
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: len(controller.polls()) == 1, timeout_seconds=10)
        assert agent.poll_interval_seconds == 3600
        version = await controller.publish("https://example.org/hinted")
        hints.queue.put_nowait(version)

        async def forwarded() -> bool:
            return (await worker_holds(worker))["version"] == version

        await eventually(forwarded, timeout_seconds=10)
    finally:
        await agent.stop()
        await task
    assert [s.status for s in controller.polls()] == [200, 200]
