"""The held configuration's rule, without HTTP."""

from __future__ import annotations

import hashlib
import logging

import pytest

from common.errors import Conflict, PreconditionFailed
from common.models import DEFAULT_WORKER_CONFIG, WorkerConfig
from worker.store import ConfigStore, etag_of

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


def test_etag_digests_the_compact_canonical_json() -> None:
    """The ETag is the version and the first 16 hex digits of the SHA-256 of the compact,
    sorted, UTF-8 JSON of the configuration: the controller's form, not an ASCII-escaped
    or spaced one."""
    config = WorkerConfig(url="https://example.org/caf\u00e9?a=1")
    canonical = '{"url":"https://example.org/caf\u00e9?a=1"}'.encode()
    digest = hashlib.sha256(canonical).hexdigest()[:16]
    assert etag_of(7, config) == f'"7-{digest}"'


def test_counts_what_became_of_each_update() -> None:
    """applied, unchanged and refused count each update once, with a message naming it."""
    store = ConfigStore()
    first, other = WorkerConfig(url="https://a.example/"), WorkerConfig(url="https://b.example/")
    stale = '"1-0000000000000000"'
    assert store.apply(1, first)
    with pytest.raises(PreconditionFailed, match="does not name the held configuration"):
        store.apply(2, first, if_match=stale)
    with pytest.raises(Conflict, match="Version 0 is older than the held version 1"):
        store.apply(0, first)
    with pytest.raises(Conflict, match="Version 1 is already held with a different"):
        store.apply(1, other)
    with pytest.raises(PreconditionFailed):
        store.apply(2, first, if_match=stale)
    assert not store.apply(1, first, if_match=store.held.etag)
    assert not store.apply(1, first)
    assert not store.apply(1, first, if_match=store.held.etag)
    assert (store.applied, store.unchanged, store.refused) == (1, 3, 4)


def test_an_unchanged_update_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """The same version and configuration again logs config.unchanged, either way."""
    store = ConfigStore()
    store.apply(1, A)
    with caplog.at_level(logging.DEBUG, logger="worker.store"):
        store.apply(1, A)
        store.apply(1, A, if_match=store.held.etag)
    assert [r.getMessage() for r in caplog.records] == ["config.unchanged version=1"] * 2


def test_every_change_is_logged_with_its_version_and_redacted_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker logs each configuration it takes (version, URL without credentials),
    and says when If-Match replaced the held one."""
    store = ConfigStore()
    with caplog.at_level(logging.INFO, logger="worker.store"):
        store.apply(2, WorkerConfig(url="https://user:secret@a.example/x"))
        store.apply(1, WorkerConfig(url=None), if_match=store.held.etag)
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0].startswith("config.applied version=2 url=https://")
    assert "secret" not in messages[0]
    assert "a.example/x" in messages[0]
    assert messages[1] == (
        "config.replaced version=1 previous_version=2: If-Match named the held one"
    )
    assert messages[2] == "config.applied version=1 url=None"
