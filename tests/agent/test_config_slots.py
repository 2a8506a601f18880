"""The configuration's two slots: written in place, in turn; the newer whole one is used.

A write only ever overwrites the slot that does not hold the newest whole document, so
a torn or failed write leaves the write before it; a damaged slot is never used.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from agent.config_slots import MAX_SLOT_BYTES, SLOT_BLOCK_BYTES
from agent.storage import Storage
from tests.support.state import cached_config as cached
from tests.support.state import newest_config_slot, write_legacy_config, written_at


def _write_count(slot: Path) -> int:
    return int(json.loads(slot.read_bytes())["write"])


def _corrupt_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("state.corrupt")]


def test_writes_alternate_between_the_slots_and_count_up(store: Storage) -> None:
    """Each write goes to the other slot with the next write count; the newer loads."""
    first, second = store.config_paths
    store.save_config(cached(1))
    assert (_write_count(first), second.exists()) == (1, False)
    store.save_config(cached(2))
    store.save_config(cached(3))
    assert (_write_count(first), _write_count(second)) == (3, 2)
    assert store.load_config() == cached(3)


def test_slots_are_written_in_place(store: Storage) -> None:
    """A slot is the same file from one write to the next: nothing created or renamed."""
    for version in (1, 2):
        store.save_config(cached(version))
    inodes = [path.stat().st_ino for path in store.config_paths]
    for version in range(3, 9):
        store.save_config(cached(version))
    assert [path.stat().st_ino for path in store.config_paths] == inodes
    assert store.load_config() == cached(8)


def test_a_damaged_newer_slot_gives_the_write_before_it(
    store: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """The newer slot torn (a crash mid-write): it is logged and never used; the older
    slot, the write before, is. The next write goes over the damaged slot, not the other."""
    store.save_config(cached(1, "https://one.example/"))
    store.save_config(cached(2, "https://two.example/"))
    older, newer = store.config_paths
    data = newer.read_bytes().rstrip(b" ")
    newer.write_bytes(data[: len(data) // 2])

    restarted = Storage(store.state_dir)
    assert restarted.load_config() == cached(1, "https://one.example/")
    assert _corrupt_lines(caplog) == [f"state.corrupt path={newer} reason=not valid JSON"]

    kept = older.read_bytes()
    restarted.save_config(cached(3))
    assert older.read_bytes() == kept
    assert _write_count(newer) == 2  # the count continues past the last whole write
    assert Storage(store.state_dir).load_config() == cached(3)
    restarted.close()


def test_a_failed_write_leaves_the_newer_slot_untouched(
    store: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails (the disk full, say) raises; the slot holding the newest whole
    document is not touched, and the next write goes to the same slot as the failed one."""
    store.save_config(cached(1))
    store.save_config(cached(2))
    older, newer = store.config_paths
    kept = newer.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "fdatasync", full_disk)
        with pytest.raises(OSError, match="No space"):
            store.save_config(cached(3))
    assert newer.read_bytes() == kept
    store.save_config(cached(4))
    assert newer.read_bytes() == kept
    assert store.load_config() == cached(4)
    assert newest_config_slot(store.state_dir) == older


def test_the_write_count_decides_not_the_version(store: Storage) -> None:
    """After a restored database the version goes back: the later write still wins."""
    store.save_config(cached(9))
    store.save_config(cached(2))
    assert Storage(store.state_dir).load_config() == cached(2)


def test_a_restarted_store_writes_over_the_older_slot(store: Storage) -> None:
    """A new Storage (a restarted agent) finds which slot is older and counts on."""
    for version in (1, 2, 3):
        store.save_config(cached(version))
    store.close()
    restarted = Storage(store.state_dir)
    restarted.save_config(cached(4))
    first, second = store.config_paths
    assert (_write_count(first), _write_count(second)) == (3, 4)
    assert restarted.load_config() == cached(4)
    restarted.close()


def test_a_shorter_document_after_a_longer_one_is_padded(store: Storage) -> None:
    """Slots are whole blocks and never shrink; a shorter document is padded with spaces
    over what the longer one left, and loads."""
    long_url = "https://example.org/" + "a" * 2000
    store.save_config(cached(1, long_url))
    store.save_config(cached(2, long_url))
    store.save_config(cached(3, "https://short.example/"))
    first = store.config_paths[0]
    size = first.stat().st_size
    assert size == SLOT_BLOCK_BYTES
    assert b"aaaa" not in first.read_bytes()
    assert first.read_bytes().rstrip(b" ").endswith(b"}\n")
    assert store.load_config() == cached(3, "https://short.example/")


def test_a_symlink_at_a_slot_is_not_followed(store: Storage, tmp_path: Path) -> None:
    """A symlink planted at a slot's name is neither read (it is damaged) nor written
    through (it is replaced by a file of the agent's own)."""
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    first = store.config_paths[0]
    first.symlink_to(outside)
    assert store.load_config() is None
    store.save_config(cached(1))
    assert outside.read_bytes() == b"precious"
    assert not first.is_symlink()
    assert store.load_config() == cached(1)


def test_a_hard_link_at_a_slot_is_not_written_through(store: Storage) -> None:
    """A slot that is a second link to another file (identity.json, say) is replaced,
    so the other file keeps its content."""
    store.save_config(cached(1))
    store.save_config(cached(2))
    other = store.state_dir / "other"
    other.write_bytes(b"another file")
    first = store.config_paths[0]
    first.unlink()
    os.link(other, first)
    Storage(store.state_dir).save_config(cached(3))
    assert other.read_bytes() == b"another file"
    assert first.stat().st_nlink == 1
    assert Storage(store.state_dir).load_config() == cached(3)


def test_an_open_slot_is_made_private(store: Storage) -> None:
    """A slot another process left readable is made 0600 before it is written."""
    store.save_config(cached(1))
    store.save_config(cached(2))
    first = store.config_paths[0]
    first.chmod(0o644)
    Storage(store.state_dir).save_config(cached(3))
    assert first.stat().st_mode & 0o777 == 0o600


def test_config_json_of_an_earlier_release_is_read_then_removed(store: Storage) -> None:
    """Without slots, config.json (how earlier releases kept the configuration) is the
    configuration; once a slot is written it is removed."""
    write_legacy_config(store.state_dir, cached(5))
    assert store.load_config() == cached(5)
    _next_write_replaces_config_json(store, 6)


def _next_write_replaces_config_json(storage: Storage, version: int) -> None:
    """``storage`` writes ``version``: into a slot, config.json removed, read at start."""
    storage.save_config(cached(version))
    assert not storage.legacy_config_path.exists()
    assert Storage(storage.state_dir).load_config() == cached(version)


def test_config_json_older_than_the_slots_is_not_read(
    store: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A config.json written before the slots (a crash before it was removed) is never
    read, even if every slot is damaged."""
    caplog.set_level(logging.WARNING)
    store.save_config(cached(1))
    write_legacy_config(store.state_dir, cached(7))
    written_at(store.legacy_config_path, 1_000)
    written_at(store.config_paths[0], 2_000)
    assert Storage(store.state_dir).load_config() == cached(1)
    store.config_paths[0].write_text("{")
    written_at(store.config_paths[0], 2_000)
    assert Storage(store.state_dir).load_config() is None
    assert len(_corrupt_lines(caplog)) == 1


def _two_slots_then_config_json(store: Storage, config_json_written_at: int) -> None:
    """Versions 1 and 2 in the slots (written at 1,000 and 2,000 s), then version 9 in
    config.json, written at ``config_json_written_at``."""
    store.save_config(cached(1))
    store.save_config(cached(2))
    write_legacy_config(store.state_dir, cached(9))
    written_at(store.config_paths[0], 1_000)
    written_at(store.config_paths[1], 2_000)
    written_at(store.legacy_config_path, config_json_written_at)


def test_config_json_as_old_as_a_slot_is_not_read(store: Storage) -> None:
    """Written in the same instant as the newer slot: the slot is the configuration."""
    _two_slots_then_config_json(store, 2_000)
    assert Storage(store.state_dir).load_config() == cached(2)


def test_config_json_written_after_the_slots_is_the_configuration(store: Storage) -> None:
    """Downgraded to a release that keeps config.json, then upgraded again: the slots
    hold what this release saved before the downgrade, config.json what the earlier
    release applied since, so config.json is read. The next write goes to a slot and
    removes it."""
    _two_slots_then_config_json(store, 3_000)
    upgraded = Storage(store.state_dir)
    assert upgraded.load_config() == cached(9)
    _next_write_replaces_config_json(upgraded, 10)


def test_a_damaged_config_json_written_after_the_slots_gives_no_configuration(
    store: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """config.json is newer than the slots but damaged: nothing is applied from disk,
    not the older slots (they may be far older than what the worker runs)."""
    caplog.set_level(logging.WARNING)
    store.save_config(cached(1))
    store.legacy_config_path.write_text("{")
    written_at(store.config_paths[0], 1_000)
    written_at(store.legacy_config_path, 2_000)
    assert Storage(store.state_dir).load_config() is None
    assert _corrupt_lines(caplog) == [
        f"state.corrupt path={store.legacy_config_path} reason=not valid JSON"
    ]


def test_a_fifo_or_huge_file_at_a_slot_is_not_used(
    store: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A FIFO planted at one slot is damaged (read without blocking) and a file larger
    than any slot at the other too; the next writes replace each with a slot of its own."""
    first, second = store.config_paths
    os.mkfifo(first, 0o600)
    second.write_bytes(b" " * (MAX_SLOT_BYTES + 1))
    assert store.load_config() is None
    assert sorted(_corrupt_lines(caplog)) == [
        f"state.corrupt path={first} reason=not a regular file",
        f"state.corrupt path={second} reason=larger than {MAX_SLOT_BYTES} bytes",
    ]
    store.save_config(cached(1))
    store.save_config(cached(2))
    assert first.is_file()
    assert second.stat().st_size == SLOT_BLOCK_BYTES
    assert Storage(store.state_dir).load_config() == cached(2)
