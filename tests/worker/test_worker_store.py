"""The held configuration's rule, without HTTP."""

from __future__ import annotations

import pytest

from common.errors import Conflict
from common.models import DEFAULT_WORKER_CONFIG, WorkerConfig
from worker.store import ConfigStore

A = WorkerConfig(url="https://a.example")
B = WorkerConfig(url="https://b.example")


def test_starts_at_version_0_with_default_config() -> None:
    """A new store holds version 0 and {"url": null}."""
    held = ConfigStore().held
    assert (held.version, held.config) == (0, DEFAULT_WORKER_CONFIG)


def test_apply_reports_whether_anything_changed() -> None:
    """apply() is True for a newer version and False for the held one re-sent."""
    store = ConfigStore()
    assert store.apply(1, A) is True
    assert store.apply(1, A) is False
    assert store.apply(2, B) is True
    assert (store.held.version, store.held.config) == (2, B)


@pytest.mark.parametrize(("version", "config"), [(1, A), (2, B)])
def test_conflicts_change_nothing(version: int, config: WorkerConfig) -> None:
    """An older version, or the held version with another config, raises Conflict only."""
    store = ConfigStore()
    store.apply(2, A)
    with pytest.raises(Conflict):
        store.apply(version, config)
    assert (store.held.version, store.held.config) == (2, A)
