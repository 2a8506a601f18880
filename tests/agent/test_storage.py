"""The agent's storage: identity.json, the configuration's slots, the atomic writes.

The slots themselves (in place, two of them, the newer whole one): test_config_slots.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import threading
import uuid
from pathlib import Path

import pytest

from agent.state_files import MAX_DOCUMENT_BYTES, checksum, open_directory, write_atomically
from agent.storage import Identity, StateDirNotPrivate, Storage
from agent.storage_writer import StorageThread, StorageWriter
from tests.support.state import cached_config as cached
from tests.support.state import newest_config_slot

CONTROLLER = "http://controller.test:8000"


def identity(controller_url: str = CONTROLLER) -> Identity:
    return Identity(
        controller_url=controller_url, agent_id=uuid.uuid4(), agent_token="agent-secret-token"
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_in(directory: Path, name: str, data: bytes) -> None:
    fd = open_directory(directory)
    try:
        write_atomically(fd, name, data)
    finally:
        os.close(fd)


def test_identity_round_trip(store: Storage) -> None:
    """A saved identity loads back equal for the same controller."""
    saved = identity()
    store.save_identity(saved)
    assert store.load_identity(CONTROLLER) == saved


def test_config_round_trip(store: Storage) -> None:
    """A saved configuration loads back equal, ETag and poll interval included."""
    saved = cached()
    store.save_config(saved)
    assert store.load_config() == saved


def test_missing_files_load_as_none(store: Storage, caplog: pytest.LogCaptureFixture) -> None:
    """No files yet: both load as None, and nothing is called corrupt."""
    assert store.load_identity(CONTROLLER) is None
    assert store.load_config() is None
    assert "state.corrupt" not in caplog.text


def test_file_format_and_checksum(store: Storage) -> None:
    """The files carry format 1 and the SHA-256 of the canonical JSON of the other fields."""
    store.save_config(cached())
    document = json.loads(newest_config_slot(store.state_dir).read_text())
    fields = {k: v for k, v in document.items() if k != "checksum"}
    assert document["format"] == 1
    assert set(fields) == {"format", "write", "version", "etag", "config", "poll_interval_seconds"}
    assert document["checksum"] == checksum(fields)
    store.save_identity(identity())
    assert set(json.loads(store.identity_path.read_text())) == {
        "format",
        "controller_url",
        "agent_id",
        "agent_token",
        "hints_redis_url",
        "hints_channel",
        "checksum",
    }


def test_modes_are_private(tmp_path: Path) -> None:
    """The state directory is 0700 and the files 0600 (identity.json holds a secret)."""
    store = Storage(tmp_path / "a" / "state")
    store.prepare()
    store.save_identity(identity())
    store.save_config(cached())
    assert mode(store.state_dir) == 0o700
    assert mode(store.identity_path) == 0o600
    assert mode(newest_config_slot(store.state_dir)) == 0o600


def test_existing_open_directory_is_made_private(tmp_path: Path) -> None:
    """A state directory that already exists with 0755 is tightened to 0700."""
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    Storage(directory).prepare()
    assert mode(directory) == 0o700


def test_created_directory_is_private_whatever_the_umask(tmp_path: Path) -> None:
    """The agent creates its state directory 0700, even under a permissive umask."""
    old = os.umask(0)
    try:
        Storage(tmp_path / "state").prepare()
    finally:
        os.umask(old)
    assert mode(tmp_path / "state") == 0o700


def test_own_directory_closed_even_to_its_owner_is_made_private(tmp_path: Path) -> None:
    """A state directory of the agent's user that it cannot even read (mode 0300) is
    tightened to 0700 before it is opened, as one open to others is."""
    directory = tmp_path / "state"
    directory.mkdir()
    directory.chmod(0o300)
    store = Storage(directory)
    store.prepare()
    assert mode(directory) == 0o700
    store.save_config(cached())
    assert store.load_config() == cached()
    store.close()


def test_directory_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state directory owned by another user is refused with a clear error, untouched."""
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    owner = directory.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    with pytest.raises(StateDirNotPrivate, match="belongs to uid"):
        Storage(directory).prepare()
    assert mode(directory) == 0o755


def test_stale_temporary_file_is_replaced(tmp_path: Path) -> None:
    """A temporary file left by a crash (another mode, other content) is replaced anew."""
    target = tmp_path / "identity.json"
    stale = tmp_path / ".identity.json.tmp"
    stale.write_bytes(b"stale and longer than the new content")
    stale.chmod(0o644)
    write_in(tmp_path, "identity.json", b"{}")
    assert target.read_bytes() == b"{}"
    assert mode(target) == 0o600
    assert not stale.exists()


def test_symlink_at_the_temporary_name_is_not_followed(tmp_path: Path) -> None:
    """A symlink planted at the temporary name is removed, not written through."""
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / ".identity.json.tmp").symlink_to(outside)
    write_in(directory, "identity.json", b"{}")
    assert outside.read_bytes() == b"precious"
    assert (directory / "identity.json").read_bytes() == b"{}"
    assert not (directory / "identity.json").is_symlink()
    assert [p.name for p in directory.iterdir()] == ["identity.json"]


def test_writes_leave_no_temporary_files(store: Storage) -> None:
    """Repeated writes leave exactly the state files behind: the identity, two slots."""
    for version in range(1, 6):
        store.save_config(cached(version))
        store.save_identity(identity())
    assert sorted(p.name for p in store.state_dir.iterdir()) == [
        "config.a.json",
        "config.b.json",
        "identity.json",
    ]
    assert store.load_config() == cached(5)


def test_writes_go_to_the_directory_that_was_checked(tmp_path: Path) -> None:
    """The directory prepare() checked is the one written to: one put in its place at
    the same path afterwards (by whoever can write the parent) gets nothing."""
    store = Storage(tmp_path / "state")
    store.prepare()
    (tmp_path / "state").rename(tmp_path / "moved")
    (tmp_path / "state").mkdir(mode=0o777)
    store.save_config(cached())
    store.save_identity(identity())
    assert list((tmp_path / "state").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "moved").iterdir()) == [
        "config.a.json",
        "identity.json",
    ]
    store.close()


def test_a_closed_store_opens_its_directory_again(store: Storage) -> None:
    """close() lets the directory's descriptor go; a later write opens it again."""
    store.save_config(cached(1))
    store.close()
    store.close()
    store.save_config(cached(2))
    assert store.load_config() == cached(2)
    store.clear_identity()
    store.close()


def test_the_file_is_the_checksum_then_the_fields_as_hashed(store: Storage) -> None:
    """One serialisation: the checksum, then the canonical JSON of the fields it covers
    (then spaces to the slot's size)."""
    store.save_config(cached())
    text = newest_config_slot(store.state_dir).read_text()
    head, _, rest = text.rstrip(" ").partition(",")
    fields = {k: v for k, v in json.loads(text).items() if k != "checksum"}
    assert head == f'{{"checksum":"{checksum(fields)}"'
    assert "{" + rest == json.dumps(fields, sort_keys=True, separators=(",", ":")) + "\n"


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    """A write whose rename fails removes its temporary file and raises."""
    target = tmp_path / "identity.json"
    target.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OSError, match="directory"):
        write_in(tmp_path, "identity.json", b"{}")
    assert [p.name for p in tmp_path.iterdir()] == ["identity.json"]
    assert target.is_dir()


def _assert_corrupt(caplog: pytest.LogCaptureFixture, path: Path, reason: str) -> None:
    records = [r for r in caplog.records if r.getMessage().startswith("state.corrupt")]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert f"path={path}" in records[0].getMessage()
    assert f"reason={reason}" in records[0].getMessage()


def test_checksum_mismatch_is_not_applied(store: Storage, caplog: pytest.LogCaptureFixture) -> None:
    """A field edited without its checksum makes the file corrupt: logged, not loaded."""
    store.save_config(cached(3))
    slot = newest_config_slot(store.state_dir)
    document = json.loads(slot.read_text())
    document["version"] = 4
    slot.write_text(json.dumps(document))
    assert store.load_config() is None
    _assert_corrupt(caplog, slot, "checksum mismatch")


def test_truncated_file_is_not_applied(store: Storage, caplog: pytest.LogCaptureFixture) -> None:
    """A file cut short (a torn write on another file system) is corrupt."""
    store.save_config(cached())
    slot = newest_config_slot(store.state_dir)
    data = slot.read_bytes().rstrip(b" ")
    slot.write_bytes(data[: len(data) // 2])
    assert store.load_config() is None
    _assert_corrupt(caplog, slot, "not valid JSON")


def test_garbage_file_is_not_applied(store: Storage, caplog: pytest.LogCaptureFixture) -> None:
    """Bytes that are not JSON at all are corrupt."""
    store.identity_path.write_bytes(b"\x00\xff\xfe garbage \x80")
    assert store.load_identity(CONTROLLER) is None
    _assert_corrupt(caplog, store.identity_path, "not valid JSON")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[1, 2, 3]", "not a JSON object"),
        ('{"format": 1}', "unexpected shape"),
        (
            '{"format": 2, "write": 1, "version": 1, "etag": null, "config": {"url": null}, '
            '"poll_interval_seconds": 5, "checksum": "x"}',
            "unexpected shape (format)",
        ),
    ],
)
def test_wrong_shape_is_not_applied(
    store: Storage, caplog: pytest.LogCaptureFixture, content: str, reason: str
) -> None:
    """Valid JSON of the wrong shape or format is corrupt."""
    slot = store.config_paths[0]
    slot.write_text(content)
    assert store.load_config() is None
    _assert_corrupt(caplog, slot, reason)


def test_invalid_configuration_with_valid_checksum_is_not_applied(
    store: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A checksummed file whose configuration is not a valid WorkerConfig is not applied."""
    fields = {
        "format": 1,
        "write": 1,
        "version": 2,
        "etag": '"2"',
        "config": {"url": "ftp://example.org/"},
        "poll_interval_seconds": 5,
    }
    slot = store.config_paths[0]
    slot.write_text(json.dumps({**fields, "checksum": checksum(fields)}))
    assert store.load_config() is None
    _assert_corrupt(caplog, slot, "config is not a valid worker configuration")


def _load_each_document(store: Storage) -> dict[str, object]:
    """identity.json, registration.json and config.json (no slot exists), each loaded."""
    return {
        "identity.json": store.load_identity(CONTROLLER),
        "registration.json": store.load_registration_key(CONTROLLER),
        "config.json": store.load_config(),
    }


def _plant(store: Storage, name: str, kind: str, tmp_path: Path) -> str:
    """Put a FIFO, a symlink to a whole document or a huge file at ``name``; the reason
    the agent is expected to give."""
    path = store.state_dir / name
    if kind == "fifo":
        os.mkfifo(path, 0o600)
        return "not a regular file"
    if kind == "symlink":
        elsewhere = Storage(tmp_path / "elsewhere")
        elsewhere.prepare()
        elsewhere.save_identity(identity())
        elsewhere.save_registration_key(CONTROLLER, uuid.uuid4())
        elsewhere.save_config(cached())
        target = {"config.json": elsewhere.config_paths[0]}.get(name, elsewhere.state_dir / name)
        path.symlink_to(target)
        return "a symlink"
    path.write_bytes(b" " * (MAX_DOCUMENT_BYTES + 1))
    return f"larger than {MAX_DOCUMENT_BYTES} bytes"


@pytest.mark.parametrize("name", ["identity.json", "registration.json", "config.json"])
@pytest.mark.parametrize("kind", ["fifo", "symlink", "huge"])
def test_what_is_planted_at_a_document_is_read_without_harm(
    store: Storage, tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, kind: str
) -> None:
    """A FIFO at identity.json, registration.json or config.json does not stop the
    agent's start (a blocking read of a FIFO with no writer never returns), a symlink is
    not followed, a huge file is not read whole: each is damaged, and nothing is loaded."""
    reason = _plant(store, name, kind, tmp_path)
    loaded: list[dict[str, object]] = []
    loading = threading.Thread(target=lambda: loaded.append(_load_each_document(store)))
    loading.daemon = True  # left blocked on the FIFO if the read blocks: the test fails
    loading.start()
    loading.join(timeout=10)
    assert loaded, f"loading the state directory with a {kind} at {name} did not return"
    assert loaded[0] == {"identity.json": None, "registration.json": None, "config.json": None}
    _assert_corrupt(caplog, store.state_dir / name, reason)


def test_damaged_config_keeps_identity(store: Storage) -> None:
    """A damaged configuration does not cost the identity."""
    saved = identity()
    store.save_identity(saved)
    store.save_config(cached())
    newest_config_slot(store.state_dir).write_text("{")
    assert store.load_config() is None
    assert store.load_identity(CONTROLLER) == saved


def test_identity_for_another_controller_is_ignored(
    store: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """An identity saved for another controller URL is not used (the agent re-registers)."""
    caplog.set_level(logging.INFO)
    store.save_identity(identity("http://old-controller.test:8000"))
    assert store.load_identity(CONTROLLER) is None
    assert "state.identity_ignored reason=other_controller" in caplog.text
    assert "state.corrupt" not in caplog.text


def test_clear_identity(store: Storage) -> None:
    """Clearing the identity removes the file; clearing twice is harmless."""
    store.save_identity(identity())
    store.clear_identity()
    store.clear_identity()
    assert store.load_identity(CONTROLLER) is None


def test_token_not_in_repr() -> None:
    """The agent token never shows in an Identity's repr."""
    assert "agent-secret-token" not in repr(identity())


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("agent-storage")]


async def test_writer_finishes_its_writes_and_lets_its_thread_go(store: Storage) -> None:
    """close() waits for the write in hand, then the writer's thread ends; no write after."""
    before = set(_writer_threads())
    writer = StorageWriter()
    writer.open()
    await writer.write(store.save_config, cached())
    assert set(_writer_threads()) - before
    await writer.close()
    for thread in set(_writer_threads()) - before:
        thread.join(timeout=5)
    assert set(_writer_threads()) <= before
    assert store.load_config() == cached()
    with pytest.raises(RuntimeError):
        await writer.write(store.save_config, cached(4))


async def test_shared_storage_thread_is_used_and_left_running(tmp_path: Path) -> None:
    """A writer given a shared thread writes on it and does not stop it on close."""
    shared = StorageThread(name="shared-storage")
    try:
        writer = StorageWriter(shared)
        writer.open()
        names: list[str] = []
        await writer.write(lambda: names.append(threading.current_thread().name))
        await writer.close()
        assert names[0].startswith("shared-storage")
        other = StorageWriter(shared)
        other.open()
        await other.write(lambda: names.append("still running"))
        assert names[-1] == "still running"
        with pytest.raises(RuntimeError):
            await writer.write(lambda: None)
    finally:
        shared.stop()


async def test_writes_nobody_awaits_run_in_order_and_close_waits_for_them(store: Storage) -> None:
    """submit() returns before the disk is touched; the writes run in the order asked,
    and close() returns only once the last is on disk."""
    writer = StorageWriter()
    writer.open()
    gate = threading.Event()
    order: list[int] = []
    writer.submit(gate.wait, 30)
    for version in (4, 5, 6):
        writer.submit(store.save_config, cached(version))
        writer.submit(order.append, version)
    assert order == []  # nothing ran: the first write still holds the thread
    gate.set()
    await writer.close()
    assert order == [4, 5, 6]
    assert store.load_config() == cached(6)


async def test_a_failed_write_is_logged_and_the_next_ones_still_run(
    store: Storage, caplog: pytest.LogCaptureFixture
) -> None:
    """A write that fails (submitted or awaited) is logged as state.write_failed; an
    OSError does not reach whoever awaits it, and the writes behind it go on."""

    def full_disk() -> None:
        raise OSError(28, "No space left on device")

    writer = StorageWriter()
    writer.open()
    with caplog.at_level(logging.ERROR, logger="agent.storage_writer"):
        writer.submit(full_disk)
        await writer.write(full_disk)
        await writer.write(store.save_config, cached(8))
        await writer.close()
    failures = [r for r in caplog.records if "state.write_failed" in r.getMessage()]
    assert len(failures) == 2
    assert "No space left on device" in failures[0].getMessage()
    assert store.load_config() == cached(8)


async def test_an_awaited_write_finishes_even_if_its_caller_is_cancelled(store: Storage) -> None:
    """Cancelling the caller of write() does not cancel the write: it lands on disk."""
    writer = StorageWriter()
    writer.open()
    gate = threading.Event()
    writer.submit(gate.wait, 30)
    caller = asyncio.ensure_future(writer.write(store.save_config, cached(9)))
    await asyncio.sleep(0)
    caller.cancel()
    gate.set()
    await writer.close()
    assert caller.cancelled()
    assert store.load_config() == cached(9)
