"""A serving controller keeps what start-up built out of the cyclic collector's passes
and lets the first generation grow before a pass (controller.serving.settle_heap)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from aiohttp import web

from controller.constants import GC_YOUNG_THRESHOLD
from controller.serving import served, settle_heap


@pytest.fixture
def collector_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector_restored")
def test_settling_freezes_what_is_alive_and_raises_the_young_threshold() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    built_at_start = [[index] for index in range(1000)]
    settle_heap()
    assert gc.get_freeze_count() >= len(built_at_start)
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
    assert GC_YOUNG_THRESHOLD > 700


@pytest.mark.usefixtures("collector_restored")
async def test_a_served_app_settles_its_heap_once_started() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    app = web.Application()
    started: list[int] = []

    async def own_start_up(_app: web.Application) -> None:
        # The app's own start-up runs first: the heap is settled after it.
        started.append(gc.get_freeze_count())

    app.on_startup.append(own_start_up)
    runner = web.AppRunner(served(app))
    await runner.setup()
    try:
        assert started == [0]
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
    finally:
        await runner.cleanup()
