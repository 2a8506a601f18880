"""A flood of hints costs a replica a bounded number of re-reads (controller/hinted_refresh.py)."""

from __future__ import annotations

import asyncio
import itertools

from controller.hinted_refresh import HintedRefresh


class SlowRefresh:
    """A refresh that takes ``seconds``, noting when each began (loop time)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.began: list[float] = []

    async def __call__(self) -> None:
        self.began.append(asyncio.get_running_loop().time())
        await asyncio.sleep(self.seconds)


async def test_a_flood_of_hints_costs_one_refresh_and_one_more() -> None:
    """10,000 hints while a refresh runs: that one, and one more after it, not 10,000.
    (Hints before a refresh begins are its own: it reads what they announced.)"""
    refresh = SlowRefresh(0.02)
    hinted = HintedRefresh(refresh, gap_seconds=0.05)
    hinted()
    hinted()
    await asyncio.sleep(0.005)
    assert len(refresh.began) == 1  # the second hint came before the first refresh began
    for _ in range(10_000):
        hinted()
    await asyncio.sleep(1.0)
    assert len(refresh.began) == 2
    assert (hinted.refreshes, hinted.coalesced) == (2, 10_001)


async def test_a_hint_after_a_quiet_spell_refreshes_at_once() -> None:
    """The gap is between hinted refreshes, not before the first: with a gap of 10 s, the
    first hint's refresh still begins at once."""
    refresh = SlowRefresh(0.0)
    hinted = HintedRefresh(refresh, gap_seconds=10.0)
    hinted()
    await asyncio.sleep(0)
    assert len(refresh.began) == 1


async def test_hints_that_keep_coming_are_served_once_per_gap_the_last_included() -> None:
    """A hint every millisecond for half a second: refreshes begin at least a gap apart,
    and one begins after the last hint."""
    refresh = SlowRefresh(0.0)
    hinted = HintedRefresh(refresh, gap_seconds=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while loop.time() - start < 0.5:
        last_hint = loop.time()
        hinted()
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.5)
    gaps = [b - a for a, b in itertools.pairwise(refresh.began)]
    assert all(gap >= 0.05 - 0.001 for gap in gaps), gaps
    assert len(refresh.began) <= (last_hint - start) / 0.05 + 3  # the first, the trailing
    assert refresh.began[-1] >= last_hint  # the flood's last hint was served


async def test_close_cancels_a_refresh_under_way() -> None:
    refresh = SlowRefresh(10.0)
    hinted = HintedRefresh(refresh, gap_seconds=0.05)
    hinted()
    await asyncio.sleep(0.01)
    await asyncio.wait_for(hinted.close(), timeout=1.0)
