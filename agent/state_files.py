"""The state directory's documents: their format, their checks, how they are read, and
atomic replacement.

A document is one JSON object: its fields and ``checksum``, the SHA-256 (hex) of the
canonical JSON (sorted keys, compact) of the other fields. A document that cannot be
parsed, has the wrong shape or fails its checksum is :class:`CorruptStorage`: it is
never used; so is whatever is planted at its name that is not a regular file of at most
``MAX_DOCUMENT_BYTES`` (:func:`read_bytes`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent.constants import STORAGE_FILE_MODE

logger = logging.getLogger(__name__)

DocumentT = TypeVar("DocumentT", bound=BaseModel)

# Far above any document the agent writes (a URL, a token); a larger file is damaged,
# not read whole.
MAX_DOCUMENT_BYTES = 1 << 20
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class CorruptStorage(Exception):
    """A storage file exists but must not be used; the message says why."""


def checksum(fields: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON (sorted keys, compact) of ``fields``."""
    return _digest(_canonical(fields))


def _canonical(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _digest(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def encode_document(fields: dict[str, Any]) -> bytes:
    """The file's bytes: ``fields`` and their checksum, serialised once. The checksum
    comes first, then the fields exactly as they were hashed (readers parse the JSON, so
    the order of its keys does not matter)."""
    if not fields:
        raise ValueError("a storage document has at least one field")
    canonical = _canonical(fields)
    return f'{{"checksum":"{_digest(canonical)}",{canonical[1:]}\n'.encode()


def parse_document(raw: bytes, model: type[DocumentT]) -> DocumentT:
    """The checked document in ``raw``; CorruptStorage saying why it is not one.

    Whitespace after the document is allowed (a slot written in place is padded with it).
    """
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise CorruptStorage("not valid JSON") from exc
    if not isinstance(value, dict):
        raise CorruptStorage("not a JSON object")
    try:
        doc = model.model_validate(value)
    except ValidationError as exc:
        names = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
        raise CorruptStorage(f"unexpected shape ({', '.join(names) or 'document'})") from exc
    fields = {key: item for key, item in value.items() if key != "checksum"}
    if value["checksum"] != checksum(fields):
        raise CorruptStorage("checksum mismatch")
    return doc


def load_document(directory: int, path: Path, model: type[DocumentT]) -> DocumentT | None:
    """The checked document at ``path`` (its name resolved in the open ``directory``);
    None when it is absent, or damaged (logged as ``state.corrupt``)."""
    try:
        return parse_document(read_bytes(directory, path.name), model)
    except FileNotFoundError:
        return None
    except CorruptStorage as exc:
        log_corrupt(path, str(exc))
        return None


def modified_ns(directory: int, name: str) -> int | None:
    """When ``name`` in the open ``directory`` was last written (nanoseconds since the
    epoch; a symlink's own time); None when nothing is there."""
    try:
        return os.stat(name, dir_fd=directory, follow_symlinks=False).st_mtime_ns
    except FileNotFoundError:
        return None


def read_bytes(directory: int, name: str) -> bytes:
    """What the file ``name`` in the open ``directory`` holds; FileNotFoundError, or
    CorruptStorage when it cannot be a document.

    Whatever is planted at the name is read without harm: a symlink is not followed, a
    FIFO or device not opened for a blocking read (a FIFO with no writer would stop the
    agent's start for good), and a file larger than ``MAX_DOCUMENT_BYTES`` not read
    whole."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=directory)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptStorage("a symlink") from exc
        raise CorruptStorage(f"unreadable ({exc.strerror})") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CorruptStorage("not a regular file")
        raw = _read_at_most(fd, MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise CorruptStorage(f"unreadable ({exc.strerror})") from exc
    finally:
        os.close(fd)
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise CorruptStorage(f"larger than {MAX_DOCUMENT_BYTES} bytes")
    return raw


def _read_at_most(fd: int, limit: int) -> bytes:
    """What ``fd`` holds from its position to its end, or its first ``limit`` bytes."""
    chunks: list[bytes] = []
    left = limit
    while left > 0 and (chunk := os.read(fd, left)):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def log_corrupt(path: Path, reason: str) -> None:
    logger.warning("state.corrupt path=%s reason=%s", path, reason)


def write_atomically(
    directory: int, name: str, data: bytes, *, mode: int = STORAGE_FILE_MODE
) -> None:
    """Replace the file ``name`` in the open ``directory`` with ``data`` so that a crash
    leaves the old file or the new one.

    The temporary file has a fixed name beside the target (one agent owns its state
    directory) and is always created anew: whatever a crash (or anyone else) left at
    that name, a symlink included, is unlinked first, never opened. Names are resolved
    in the directory's descriptor, not through its path, once per write.
    """
    tmp = f".{name}.tmp"
    try:
        fd = create_new(directory, tmp, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits off the mode asked
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=directory)
        raise
    os.fsync(directory)  # the rename itself made durable


def write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    """All of ``data`` to ``fd``: at its position, or with ``pwrite`` at ``offset``."""
    view = memoryview(data)
    while view:
        if offset is None:
            written = os.write(fd, view)
        else:
            written = os.pwrite(fd, view, offset)
            offset += written
        view = view[written:]


def create_new(directory: int, name: str, mode: int, *, flags: int = os.O_WRONLY) -> int:
    """A new file ``name`` in ``directory``, open with ``flags``; what was at that name is
    removed (a symlink included: the link goes, never what it points to)."""
    flags |= os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, mode, dir_fd=directory)
    except FileExistsError:
        os.unlink(name, dir_fd=directory)
        return os.open(name, flags, mode, dir_fd=directory)


def open_directory(path: Path) -> int:
    """A descriptor of the directory at ``path`` (close it with ``os.close``)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
