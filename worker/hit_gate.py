"""How many ``GET /hit`` run at once: at most ``WORKER_HIT_MAX_IN_FLIGHT``, the others
refused at once.

A hit in flight may hold a whole upstream body (up to ``WORKER_HIT_MAX_BYTES``) until its
caller has read the answer, and one upstream connection at a time (a fresh one for each
redirect hop). A hit holds its slot from before the first hop until its answer is written,
so the gate bounds both the memory held for bodies and the upstream connections.

A hit beyond the limit waits for nothing: it is answered 503 with ``Retry-After`` and
counted in ``refused``. It is not counted in :mod:`worker.hit_counts`, since the version
held did nothing wrong, nor logged, since a flood of them would flood the log too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from common.errors import Unavailable
from worker.constants import ENV_PREFIX, HIT_BUSY_RETRY_AFTER_SECONDS


class HitGate:
    """The slots of ``GET /hit``: ``in_flight`` of ``limit`` taken, ``refused`` so far."""

    def __init__(self, *, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self.refused = 0

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the block; raise Unavailable at once when none is free."""
        if self.in_flight >= self.limit:
            self.refused += 1
            raise Unavailable(
                f"The worker is answering as many GET /hit as it may "
                f"({ENV_PREFIX}HIT_MAX_IN_FLIGHT); retry later.",
                headers={"Retry-After": str(HIT_BUSY_RETRY_AFTER_SECONDS)},
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
