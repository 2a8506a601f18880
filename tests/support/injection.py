"""Injecting one unexpected failure into running code, for the supervision tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def failing_once(original: Callable[P, R], error: BaseException) -> Callable[P, R]:
    """``original``, except that its first call raises ``error``.

    For a coroutine function the first call raises at once, before any await, which the
    caller's ``await`` sees as the coroutine raising.
    """
    failed = False

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        nonlocal failed
        if not failed:
            failed = True
            raise error
        return original(*args, **kwargs)

    return call
