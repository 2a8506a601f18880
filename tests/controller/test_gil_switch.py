"""A controller process hands the GIL to a waiting thread (the registration writer's)
within half a millisecond, not the interpreter's default 5 ms."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from controller.constants import GIL_SWITCH_INTERVAL_SECONDS
from controller.serving import share_the_gil_quickly


@pytest.fixture
def switch_interval_restored() -> Iterator[None]:
    before = sys.getswitchinterval()
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.mark.usefixtures("switch_interval_restored")
def test_serving_sets_the_short_switch_interval() -> None:
    sys.setswitchinterval(0.005)
    share_the_gil_quickly()
    assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_INTERVAL_SECONDS)
    assert GIL_SWITCH_INTERVAL_SECONDS <= 0.0005
