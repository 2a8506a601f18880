"""The agent's state directory seen from a test: which configuration slot is the newest,
the config.json earlier releases wrote, and a small filesystem to fill."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from agent.state_files import encode_document, open_directory, write_atomically
from agent.storage import CachedConfig, Storage
from common.models import WorkerConfig
from tests.support.services import unavailable


def cached_config(version: int = 3, url: str | None = "https://ip.me") -> CachedConfig:
    """A configuration as the agent holds it: ETag "<version>", poll interval 7 s."""
    return CachedConfig(
        version=version, etag=f'"{version}"', config=WorkerConfig(url=url), poll_interval_seconds=7
    )


def config_slots(state_dir: Path) -> tuple[Path, Path]:
    """The agent's two configuration slots in ``state_dir`` (nothing is opened)."""
    return Storage(state_dir).config_paths


def newest_config_slot(state_dir: Path) -> Path:
    """The slot with the highest write count among those that parse: where the agent
    wrote its configuration last."""
    counts: dict[Path, int] = {}
    for path in config_slots(state_dir):
        try:
            counts[path] = int(json.loads(path.read_bytes())["write"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    if not counts:
        raise AssertionError(f"no configuration slot in {state_dir} holds a document")
    return max(counts, key=counts.__getitem__)


def slot_holds(path: Path) -> dict[str, object] | None:
    """What a whole slot holds, as the worker's GET /config shows it (``{"version",
    "config"}``); None if the slot is absent or does not parse."""
    try:
        document = json.loads(path.read_bytes())
        return {"version": document["version"], "config": document["config"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_legacy_config(state_dir: Path, cached: CachedConfig) -> None:
    """Leave ``cached`` in config.json, as releases before the slots kept it."""
    fields = {
        "format": 1,
        "version": cached.version,
        "etag": cached.etag,
        "config": cached.config.model_dump(mode="json"),
        "poll_interval_seconds": cached.poll_interval_seconds,
    }
    directory = open_directory(state_dir)
    try:
        write_atomically(directory, "config.json", encode_document(fields))
    finally:
        os.close(directory)


def written_at(path: Path, seconds: int) -> None:
    """Set ``path``'s modification time (seconds since the epoch)."""
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))


@contextlib.contextmanager
def small_filesystem(path: Path, *, size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (created, private) for the block: a disk
    that :func:`fill` can fill. Unmounted lazily after, so that a process still holding a
    file in it does not keep it mounted. Needs root (as the suite has in CI)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        unavailable(
            f"cannot mount a tmpfs at {path}: {mounted.stderr.strip()}",
            ci_detail=" (the fault tests run as root in CI)",
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until its filesystem has no space left; the file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler
