"""The agent's storage: its identity and the last configuration it received, on disk.

Files in the state directory (``AGENT_STATE_DIR``), so that a damaged configuration
does not cost the identity (and the other way round):

    identity.json      {"format": 1, "controller_url", "agent_id", "agent_token", "checksum"}
    config.a.json,     {"format": 1, "write", "version", "etag", "config",
    config.b.json       "poll_interval_seconds", "checksum"}: two slots, the newer whole
                       one is the configuration (:mod:`agent.config_slots`)
    registration.json  {"format": 1, "controller_url", "key", "checksum"}: only while the
                       agent registers: the Idempotency-Key it sends on every attempt,
                       written before the first, removed once identity.json is

``checksum`` is the SHA-256 (hex) of the canonical JSON of the other fields
(:mod:`agent.state_files`). identity.json and registration.json are replaced atomically
(temporary file, fsync, rename, fsync of the directory), so a crash leaves the old file
or the new one. The temporary file is always created afresh (``O_CREAT | O_EXCL |
O_NOFOLLOW``): one left by a crash, or a symlink planted at its name, is unlinked, never
followed. The configuration is written in place into the older of its two slots, so a
crash leaves the newer one whole.

A ``config.json`` (one file, replaced atomically: how earlier releases kept the
configuration) is read when no slot exists or every slot is older than it (an earlier
release wrote it after a downgrade), and removed once a slot is written.

The state directory is private (0700). The agent creates it so; one that exists with
group or other permissions is tightened if the agent's user owns it. One owned by
another user, or that cannot be tightened, is refused (:class:`StateDirNotPrivate`):
the agent does not start. A file that cannot be read, or fails its checksum or
shape, is logged as ``state.corrupt`` and treated as absent: it is never applied. What
is planted at a file's name is read without harm (:func:`agent.state_files.read_bytes`):
a symlink is not followed, a FIFO does not stop the agent's start, a huge file is not
read whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.config_slots import SlotDocument, SlotPair
from agent.constants import (
    CONFIG_SLOT_NAMES,
    IDENTITY_FILE_NAME,
    LEGACY_CONFIG_FILE_NAME,
    REGISTRATION_KEY_FILE_NAME,
    STORAGE_DIR_MODE,
    STORAGE_FORMAT,
)
from agent.state_files import (
    DocumentT,
    encode_document,
    load_document,
    log_corrupt,
    modified_ns,
    open_directory,
    write_atomically,
)
from common.models import WorkerConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Identity:
    """Who this agent is to one controller."""

    controller_url: str
    agent_id: uuid.UUID
    agent_token: str = field(repr=False)
    # Where the controller said change hints are published (None: it has no Redis).
    hints_redis_url: str | None = field(default=None, repr=False)
    hints_channel: str | None = None


@dataclass(frozen=True, kw_only=True)
class CachedConfig:
    """The last configuration received from the controller."""

    version: int
    etag: str | None
    config: WorkerConfig
    poll_interval_seconds: int


class _IdentityDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal[1]
    controller_url: str = Field(min_length=1)
    agent_id: str = Field(min_length=1)
    agent_token: str = Field(min_length=1)
    hints_redis_url: str | None = None
    hints_channel: str | None = None
    checksum: str


class _RegistrationKeyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal[1]
    controller_url: str = Field(min_length=1)
    key: str = Field(min_length=36, max_length=36)
    checksum: str


class _LegacyConfigDocument(BaseModel):
    """config.json, as earlier releases wrote it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    format: Literal[1]
    version: int = Field(ge=0)
    etag: str | None
    config: dict[str, Any]
    poll_interval_seconds: int = Field(ge=1)
    checksum: str


class _ConfigDocument(_LegacyConfigDocument, SlotDocument):
    """A configuration slot: config.json's fields and the write count."""


class StateDirNotPrivate(PermissionError):
    """The state directory is another user's, or cannot be made private: refused."""


class Storage:
    """The files in the state directory; every method is blocking file I/O.

    Writes go through one descriptor of the directory, opened by :meth:`prepare` (or by
    the first write) and kept until :meth:`close`: each write resolves its names there,
    and the directory checked is the one written to.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.identity_path = state_dir / IDENTITY_FILE_NAME
        self.registration_key_path = state_dir / REGISTRATION_KEY_FILE_NAME
        self.legacy_config_path = state_dir / LEGACY_CONFIG_FILE_NAME
        self._dir_fd: int | None = None
        self._dir_lock = threading.Lock()
        self._config = SlotPair(
            self._directory,
            (state_dir / CONFIG_SLOT_NAMES[0], state_dir / CONFIG_SLOT_NAMES[1]),
            _ConfigDocument,
        )
        # Whether a config.json may still be there to remove after a slot is written.
        self._legacy_config_checked = False

    @property
    def config_paths(self) -> tuple[Path, Path]:
        """The configuration's two slots."""
        return self._config.paths

    def prepare(self) -> None:
        """Create the state directory, private to this user; tighten it if it is ours
        and open to others; refuse it (StateDirNotPrivate) if it is another user's."""
        self.state_dir.mkdir(mode=STORAGE_DIR_MODE, parents=True, exist_ok=True)
        checked = self._make_private()
        directory = open_directory(self.state_dir)
        opened = os.fstat(directory)
        if (opened.st_dev, opened.st_ino) != (checked.st_dev, checked.st_ino):
            os.close(directory)
            raise StateDirNotPrivate(
                f"the state directory {self.state_dir} was replaced while it was checked"
            )
        with self._dir_lock:
            earlier, self._dir_fd = self._dir_fd, directory
        if earlier is not None:
            self._config.close()  # its slots were opened in the earlier descriptor
            os.close(earlier)

    def _make_private(self) -> os.stat_result:
        """The directory's status once it is private (by its path: one closed even to
        its owner, mode 0300 say, is opened only after)."""
        status = self.state_dir.stat()
        if status.st_uid != os.geteuid():
            raise StateDirNotPrivate(
                f"the state directory {self.state_dir} belongs to uid {status.st_uid}, not "
                f"to this agent's user (uid {os.geteuid()}): another user could read the "
                "agent token or replace the configuration; give it to this user, or set "
                "AGENT_STATE_DIR to a directory of its own"
            )
        if status.st_mode & 0o777 == STORAGE_DIR_MODE:
            return status
        try:
            self.state_dir.chmod(STORAGE_DIR_MODE)
        except OSError as exc:
            raise StateDirNotPrivate(
                f"the state directory {self.state_dir} is open to other users "
                f"(mode {status.st_mode & 0o777:o}) and cannot be made private: {exc}"
            ) from exc
        logger.warning(
            "state.dir_tightened path=%s mode_was=%o", self.state_dir, status.st_mode & 0o777
        )
        return status

    def close(self) -> None:
        """Let the descriptors go (a later write opens them again)."""
        self._config.close()
        with self._dir_lock:
            directory, self._dir_fd = self._dir_fd, None
        if directory is not None:
            os.close(directory)

    def _directory(self) -> int:
        with self._dir_lock:
            if self._dir_fd is None:
                self._dir_fd = open_directory(self.state_dir)
            return self._dir_fd

    def load_identity(self, controller_url: str) -> Identity | None:
        """The saved identity for ``controller_url``; None if absent, damaged or another's."""
        doc = self._load(self.identity_path, _IdentityDocument)
        if doc is None:
            return None
        try:
            agent_id = uuid.UUID(doc.agent_id)
        except ValueError:
            log_corrupt(self.identity_path, "agent_id is not a UUID")
            return None
        if doc.controller_url != controller_url:
            logger.info(
                "state.identity_ignored reason=other_controller saved_for=%s", doc.controller_url
            )
            return None
        return Identity(
            controller_url=doc.controller_url,
            agent_id=agent_id,
            agent_token=doc.agent_token,
            hints_redis_url=doc.hints_redis_url,
            hints_channel=doc.hints_channel,
        )

    def save_identity(self, identity: Identity) -> None:
        self._save(
            self.identity_path,
            {
                "format": STORAGE_FORMAT,
                "controller_url": identity.controller_url,
                "agent_id": str(identity.agent_id),
                "agent_token": identity.agent_token,
                "hints_redis_url": identity.hints_redis_url,
                "hints_channel": identity.hints_channel,
            },
        )

    def clear_identity(self) -> None:
        self._remove(IDENTITY_FILE_NAME)

    def load_registration_key(self, controller_url: str) -> uuid.UUID | None:
        """The Idempotency-Key of a registration to ``controller_url`` not yet answered."""
        doc = self._load(self.registration_key_path, _RegistrationKeyDocument)
        if doc is None or doc.controller_url != controller_url:
            return None
        try:
            return uuid.UUID(doc.key)
        except ValueError:
            log_corrupt(self.registration_key_path, "key is not a UUID")
            return None

    def save_registration_key(self, controller_url: str, key: uuid.UUID) -> None:
        self._save(
            self.registration_key_path,
            {"format": STORAGE_FORMAT, "controller_url": controller_url, "key": str(key)},
        )

    def clear_registration_key(self) -> None:
        self._remove(REGISTRATION_KEY_FILE_NAME)

    def load_config(self) -> CachedConfig | None:
        """The saved configuration: the newer whole slot, or config.json when an earlier
        release wrote it after every slot (or there is no slot); None if what is read is
        absent or damaged."""
        doc: _LegacyConfigDocument | None
        if self._legacy_config_is_newer():
            doc = self._load(self.legacy_config_path, _LegacyConfigDocument)
            path = self.legacy_config_path
        else:
            doc, path = self._config.load() or (None, self.config_paths[0])
        if doc is None:
            return None
        try:
            config = WorkerConfig.model_validate(doc.config)
        except ValidationError:
            log_corrupt(path, "config is not a valid worker configuration")
            return None
        return CachedConfig(
            version=doc.version,
            etag=doc.etag,
            config=config,
            poll_interval_seconds=doc.poll_interval_seconds,
        )

    def _legacy_config_is_newer(self) -> bool:
        """Whether config.json is the last configuration written: it exists, and no slot
        does or every slot was written before it. This release removes config.json once
        it wrote a slot, so one written later comes from an earlier release the agent was
        downgraded to (and has since been upgraded from again): the slots are older than
        what that release applied. A config.json from before the slots (a crash before it
        was removed) or as old as them is not read."""
        legacy = modified_ns(self._directory(), LEGACY_CONFIG_FILE_NAME)
        if legacy is None:
            # None to remove at the first write either: this release writes no config.json.
            self._legacy_config_checked = True
            return False
        slots = self._config.last_modified_ns()
        return slots is None or legacy > slots

    def save_config(self, cached: CachedConfig) -> None:
        """Write ``cached`` over the older slot (and remove a config.json once one is)."""
        self._config.save(
            {
                "format": STORAGE_FORMAT,
                "version": cached.version,
                "etag": cached.etag,
                "config": cached.config.model_dump(mode="json"),
                "poll_interval_seconds": cached.poll_interval_seconds,
            }
        )
        if not self._legacy_config_checked:
            self._legacy_config_checked = True
            self._remove(LEGACY_CONFIG_FILE_NAME)

    def _save(self, path: Path, fields: dict[str, Any]) -> None:
        write_atomically(self._directory(), path.name, encode_document(fields))

    def _remove(self, name: str) -> None:
        directory = self._directory()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=directory)
        os.fsync(directory)

    def _load(self, path: Path, model: type[DocumentT]) -> DocumentT | None:
        return load_document(self._directory(), path, model)
