"""The processes the fuzz tests send requests to, started once for the package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS
from tests.security.conftest import WORKER_TOKEN
from tests.security.fuzz.services import (
    FuzzedController,
    fuzzed_controller,
    upstream,
    worker_process,
)


@pytest.fixture(scope="package", params=BACKENDS)
def controller(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzedController]:
    """A controller process on each backend, shared by the package's tests."""
    with fuzzed_controller(request.param, tmp_path_factory.mktemp(request.param)) as service:
        yield service


@pytest.fixture(scope="package")
def upstream_url() -> Iterator[str]:
    with upstream() as url:
        yield url


@pytest.fixture(scope="package", params=[True, False], ids=["with-token", "without-token"])
def worker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, bool]]:
    """A worker process with WORKER_TOKEN, and one without (its /config open); its URL,
    and whether it is secured."""
    secured: bool = request.param
    directory = tmp_path_factory.mktemp("worker")
    with worker_process(directory, token=WORKER_TOKEN if secured else None) as url:
        yield url, secured


@pytest.fixture(params=BACKENDS)
def fresh_controller(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FuzzedController]:
    """A controller process of the test's own on each backend: nothing fuzzed before."""
    with fuzzed_controller(request.param, tmp_path) as service:
        yield service
