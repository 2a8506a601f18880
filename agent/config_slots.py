"""The last configuration on disk: two checksummed slots, each written in place.

``config.a.json`` and ``config.b.json`` each hold one document (``{"format", "write",
..., "checksum"}``), then spaces up to the file's size. A write overwrites the slot that
does not hold the newest whole document, in place, and makes it durable with
``fdatasync``: ``pwrite`` and ``fdatasync`` into a file kept open. Replacing a file takes
seven system calls (open, fchmod, write, fsync, close, rename, fsync of the directory)
and creates, renames and frees an inode each time; an agent host running hundreds of
agents paid for them in every change (``benchmarks/README.md``).

So a crash in the middle of a write can tear only the slot being written: the other one
still holds the write before it, as a crash before a rename leaves the old file. At
start the newest slot that passes its checks is used; a slot that fails them is logged
as ``state.corrupt`` and never used. ``write`` counts writes, not versions: a version
can go back (a restored database), the write count does not.

A slot file is opened without following symlinks; one that is not a regular file of
this user with a single link and at most ``MAX_SLOT_BYTES`` (a planted FIFO, symlink,
hard link or huge file) is unlinked and created anew, never written through.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from agent.constants import STORAGE_FILE_MODE
from agent.state_files import (
    MAX_DOCUMENT_BYTES,
    create_new,
    encode_document,
    load_document,
    modified_ns,
    write_all,
)

logger = logging.getLogger(__name__)

# Slots grow in whole blocks, so a longer configuration rarely changes a file's size.
SLOT_BLOCK_BYTES = 4096
# A larger slot is damaged, not read whole (nor written).
MAX_SLOT_BYTES = MAX_DOCUMENT_BYTES
_WRITE_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class SlotDocument(BaseModel):
    """What every slot's document has: the count of the write that made it."""

    write: int = Field(ge=1)


SlotDocumentT = TypeVar("SlotDocumentT", bound=SlotDocument)


@dataclass(slots=True)
class _Slot:
    path: Path
    fd: int | None = None
    size: int = 0

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


class SlotPair(Generic[SlotDocumentT]):
    """Two slots of documents of ``model`` in a directory.

    ``directory`` gives the open descriptor of the state directory; names are resolved
    there. Blocking file I/O; one write or load at a time.
    """

    def __init__(
        self, directory: Callable[[], int], paths: tuple[Path, Path], model: type[SlotDocumentT]
    ) -> None:
        self._directory = directory
        self._slots = (_Slot(paths[0]), _Slot(paths[1]))
        self._model = model
        self._lock = threading.Lock()
        # Which slot holds the newest whole document (None: neither), and the highest
        # write count seen or written; known once the slots were read.
        self._newest: int | None = None
        self._writes = 0
        self._known = False

    @property
    def paths(self) -> tuple[Path, Path]:
        return (self._slots[0].path, self._slots[1].path)

    def last_modified_ns(self) -> int | None:
        """When a slot file was last written (the later of the two, whole or not, in
        nanoseconds since the epoch); None when neither exists."""
        directory = self._directory()
        times = [modified_ns(directory, slot.path.name) for slot in self._slots]
        return max((t for t in times if t is not None), default=None)

    def load(self) -> tuple[SlotDocumentT, Path] | None:
        """The newest document that passes its checks, and its slot; None if neither does."""
        with self._lock:
            return self._load()

    def save(self, fields: dict[str, Any]) -> None:
        """Write ``fields`` (and the next write count) over the older slot, durably."""
        with self._lock:
            if not self._known:
                self._load()
            target = 0 if self._newest is None else 1 - self._newest
            self._writes += 1
            data = encode_document({**fields, "write": self._writes})
            slot = self._slots[target]
            try:
                fd = self._open_for_writing(slot)
                size = max(slot.size, -(-len(data) // SLOT_BLOCK_BYTES) * SLOT_BLOCK_BYTES)
                # Spaces over whatever a longer document left: the file stays one document.
                write_all(fd, data + b" " * (size - len(data)), offset=0)
                os.fdatasync(fd)
            except BaseException:
                slot.close()  # opened (and checked) afresh by the next write
                raise
            slot.size = size
            self._newest = target

    def close(self) -> None:
        with self._lock:
            for slot in self._slots:
                slot.close()
            self._known = False

    def _load(self) -> tuple[SlotDocumentT, Path] | None:
        found = [
            (doc, index)
            for index, slot in enumerate(self._slots)
            if (doc := load_document(self._directory(), slot.path, self._model)) is not None
        ]
        self._known = True
        if not found:
            self._newest = None
            return None
        newest, self._newest = max(found, key=lambda pair: pair[0].write)
        self._writes = max(self._writes, newest.write)
        return newest, self._slots[self._newest].path

    def _open_for_writing(self, slot: _Slot) -> int:
        """The slot's descriptor: kept open; opened (or created) and checked once."""
        if slot.fd is not None:
            return slot.fd
        directory = self._directory()
        name = slot.path.name
        fd = _open_own_file(directory, name)
        if fd is None:
            fd = create_new(directory, name, STORAGE_FILE_MODE, flags=os.O_RDWR)
            try:
                os.fchmod(fd, STORAGE_FILE_MODE)  # whatever the umask took off
                os.fsync(directory)  # the new name made durable
            except BaseException:
                os.close(fd)
                raise
        slot.fd, slot.size = fd, os.fstat(fd).st_size
        return fd


def _open_own_file(directory: int, name: str) -> int | None:
    """``name`` open for reading and writing if it is a regular file of this user with
    one link and a slot's size at most (its mode made private); None if it is absent or
    anything else."""
    try:
        fd = os.open(name, _WRITE_FLAGS, dir_fd=directory)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # a symlink: replaced, never followed
        raise
    status = os.fstat(fd)
    if (
        stat.S_ISREG(status.st_mode)
        and status.st_nlink == 1
        and status.st_uid == os.geteuid()
        and status.st_size <= MAX_SLOT_BYTES
    ):
        if stat.S_IMODE(status.st_mode) != STORAGE_FILE_MODE:
            os.fchmod(fd, STORAGE_FILE_MODE)
        return fd
    os.close(fd)
    logger.warning(
        "state.slot_replaced name=%s reason=not a private regular file of a slot's size", name
    )
    return None
