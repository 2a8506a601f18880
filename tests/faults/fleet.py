"""The fleet the fault tests break, and what they read back from it.

SETUP                    the secrets and timings of the fault tests' fleets
Fleet                    one controller, one worker and the agent beside it, as real
                         processes (tests.support.fleet); the agent may reach the
                         controller through a TcpProxy (``link``) that the test cuts
                         and restores
unreachable_attempts()   the agent's ``controller.unreachable`` log lines, parsed
assert_full_jitter_backoff()
                         those lines against the backoff the design promises
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from tests.support import fleet as shared
from tests.support.fleet import FleetSetup, bearer
from tests.support.tcp_proxy import TcpProxy

ADMIN_TOKEN: Final = "faults-admin-token"
REGISTRATION_TOKEN: Final = "faults-registration-token"
WORKER_TOKEN: Final = "faults-worker-token"
ADMIN: Final = bearer(ADMIN_TOKEN)
REGISTRATION: Final = bearer(REGISTRATION_TOKEN)

POLL_INTERVAL_SECONDS: Final = 1
BACKOFF_BASE_SECONDS: Final = 0.05
BACKOFF_MAX_SECONDS: Final = 0.8
# How much later than promised a change may land: the poll itself, the state write (with
# fsync) and the hand-over to the worker, on a busy two-core machine.
MARGIN_SECONDS: Final = 1.5
SETUP: Final = FleetSetup(
    admin_token=ADMIN_TOKEN,
    registration_token=REGISTRATION_TOKEN,
    worker_token=WORKER_TOKEN,
    poll_interval_seconds=POLL_INTERVAL_SECONDS,
    backoff_base_seconds=BACKOFF_BASE_SECONDS,
    backoff_max_seconds=BACKOFF_MAX_SECONDS,
)

# How far a logged gap between two attempts may fall short of the logged delay, with no
# allowance for speed (a slower machine only lengthens gaps): retry_in_seconds is logged
# with two decimals (up to 5 ms above the delay slept), each log time is truncated to the
# millisecond (a gap up to 1 ms short), and log times come from the wall clock, which NTP
# may slew by at most 500 ppm against the monotonic clock the delay is slept on.
LOGGED_DELAY_ROUNDING_SECONDS: Final = 0.005
LOG_TIME_TRUNCATION_SECONDS: Final = 0.001
WALL_CLOCK_SLEW_RATE: Final = 0.0005
# A retry comes at most this long after its delay ran out (connect, fail, log).
RETRY_LATENESS_SECONDS: Final = 0.5

_UNREACHABLE: Final = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) WARNING \S+ controller\.unreachable "
    r"attempt=(?P<attempt>\d+) retry_in_seconds=(?P<delay>\d+\.\d+) ",
    re.MULTILINE,
)
_LOG_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S,%f"


@dataclass(kw_only=True)
class Fleet(shared.Fleet):
    """The shared fleet; between the agent and the controller, when the test cuts the
    agent's path, a TcpProxy."""

    link: TcpProxy | None = None


async def registered(
    http: aiohttp.ClientSession, controller_url: str, hostname: str
) -> dict[str, Any]:
    """POST /register as a machine with the registration token; the answer's body."""
    async with http.post(
        f"{controller_url}/register", json={"hostname": hostname}, headers=REGISTRATION
    ) as resp:
        assert resp.status == 201, await resp.text()
        body: dict[str, Any] = await resp.json()
    return body


async def register(http: aiohttp.ClientSession, controller_url: str, hostname: str) -> str:
    """POST /register as a machine with the registration token; the agent token."""
    return str((await registered(http, controller_url, hostname))["agent_token"])


async def config_status(http: aiohttp.ClientSession, controller_url: str, token: str) -> int:
    """The status of GET /config with ``token``."""
    async with http.get(f"{controller_url}/config", headers=bearer(token)) as resp:
        await resp.read()
        return resp.status


# -- the agent's backoff, as its log shows it -----------------------------------------


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One ``controller.unreachable`` line: when it was logged, its number, its delay."""

    at: dt.datetime
    number: int
    retry_in_seconds: float

    def ceiling_seconds(self) -> float:
        """The bound of this attempt's delay: the n-th failure draws from [0, base·2^(n-1)]."""
        return min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (self.number - 1))


def unreachable_attempts(log_text: str) -> list[Attempt]:
    return [
        Attempt(
            at=dt.datetime.strptime(match["at"], _LOG_TIME_FORMAT),
            number=int(match["attempt"]),
            retry_in_seconds=float(match["delay"]),
        )
        for match in _UNREACHABLE.finditer(log_text)
    ]


def attempts_to_reach_the_cap() -> int:
    """The first attempt number whose ceiling is the cap."""
    return 1 + math.ceil(math.log2(BACKOFF_MAX_SECONDS / BACKOFF_BASE_SECONDS))


def assert_full_jitter_backoff(attempts: list[Attempt], *, capped_at_least: int) -> None:
    """Consecutive failures 1..n, each delay drawn from [0, min(cap, base·2^(n-1))] (full
    jitter), at least ``capped_at_least`` of them at the cap, and each retry made once its
    delay had run out (the gaps between the logged attempts)."""
    numbers = [attempt.number for attempt in attempts]
    assert numbers == list(range(1, len(attempts) + 1)), numbers
    delays = [attempt.retry_in_seconds for attempt in attempts]
    for attempt in attempts:
        ceiling = attempt.ceiling_seconds() + LOGGED_DELAY_ROUNDING_SECONDS
        assert 0 <= attempt.retry_in_seconds <= ceiling, (attempt, delays)
    capped = [a.retry_in_seconds for a in attempts if a.number >= attempts_to_reach_the_cap()]
    assert len(capped) >= capped_at_least, delays
    # Jitter: the delays are drawn, not fixed; at the cap they still differ.
    assert len(set(capped)) > 1, delays
    # Growth: the capped delays go past what the first ceilings would allow.
    early_ceiling = BACKOFF_BASE_SECONDS * 2
    assert max(capped) > early_ceiling, delays
    for before, after in itertools.pairwise(attempts):
        gap = (after.at - before.at).total_seconds()
        shortest = (
            before.retry_in_seconds * (1 - WALL_CLOCK_SLEW_RATE)
            - LOGGED_DELAY_ROUNDING_SECONDS
            - LOG_TIME_TRUNCATION_SECONDS
        )
        assert gap >= shortest, (before, after)
        assert gap <= before.retry_in_seconds + RETRY_LATENESS_SECONDS, (before, after)
