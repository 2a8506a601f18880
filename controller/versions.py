"""The configuration's versions: immutable, numbered, allocated under a row lock; and
reading them back.

Every write locks the fleet table's single row (``SELECT … FOR UPDATE`` on
PostgreSQL), so replicas writing to one database at once allocate consecutive,
distinct versions, and ``If-Match`` is an exact compare-and-set. Within one process an
``asyncio.Lock`` orders writers too, which is all SQLite needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from common.errors import Conflict, NotFound, PreconditionFailed
from common.models import WorkerConfig
from controller import audit, store
from controller.cache import ConfigCache, etag_for
from controller.db import Database

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Committed:
    """The version now current, and whether this write created it."""

    record: store.VersionRecord
    created: bool
    poll_interval_seconds: int | None


@dataclass(frozen=True, kw_only=True)
class Writer:
    """Everything a configuration write needs, bundled once per application."""

    database: Database
    cache: ConfigCache
    lock: asyncio.Lock


async def _audit_version(
    conn: AsyncConnection, change: audit.Change, record: store.VersionRecord, previous: int
) -> None:
    rolled_back_to = record.provenance.rolled_back_to
    detail: dict[str, object] = {
        "version": record.version,
        "previous_version": previous,
        "config_sha256": hashlib.sha256(record.body.encode()).hexdigest(),
        "comment": change.comment,
    }
    if rolled_back_to is not None:
        detail["rolled_back_to"] = rolled_back_to
    await audit.append(
        conn,
        actor=change.actor,
        action=audit.CONFIG_PUBLISH if rolled_back_to is None else audit.CONFIG_ROLLBACK,
        target=f"config/versions/{record.version}",
        detail=detail,
    )


async def commit_version(
    writer: Writer,
    config: WorkerConfig,
    *,
    if_match: frozenset[int] | None,
    change: audit.Change,
    rolled_back_to: int | None = None,
) -> Committed:
    """Make ``config`` the current version, or return the current one if it is equal.

    ``if_match`` (the versions an If-Match header names) turns the write into
    compare-and-set: 412 unless the current version is one of them. A new version is
    recorded in the audit log in the same transaction; ``rolled_back_to`` marks it as a
    rollback to that version's content.
    """
    body = config.canonical_json()
    provenance = store.Provenance(
        created_by=change.actor, comment=change.comment, rolled_back_to=rolled_back_to
    )

    async def write(conn: AsyncConnection) -> Committed:
        fleet = await store.read_fleet_row(conn, for_update=True)
        if if_match is not None and fleet.current_version not in if_match:
            raise PreconditionFailed(
                f"If-Match does not name the current version {etag_for(fleet.current_version)}."
            )
        current = await store.read_version(conn, fleet.current_version)
        interval = fleet.poll_interval_seconds
        if current is not None and current.body == body:
            return Committed(record=current, created=False, poll_interval_seconds=interval)
        record = await store.insert_version(conn, fleet.current_version + 1, body, provenance)
        await _audit_version(conn, change, record, previous=fleet.current_version)
        return Committed(record=record, created=True, poll_interval_seconds=interval)

    async with writer.lock:
        committed = await writer.database.transaction(write)
    writer.cache.replace(committed.record, committed.poll_interval_seconds)
    if committed.created:
        logger.info("config.published version=%d", committed.record.version)
    return committed


async def rollback_version(
    writer: Writer, number: int, *, if_match: frozenset[int] | None, change: audit.Change
) -> Committed:
    """A new version with version ``number``'s content (versions are immutable, so it is
    read before the write); 404 for an unknown version, the current one if it is equal."""
    current_version, target = await read_version(writer.database, number)
    if target is None:
        raise NotFound(
            f"No configuration version {number}; the newest is version {current_version}."
        )
    try:
        config = WorkerConfig.model_validate_json(target.body)
    except ValidationError as exc:
        raise Conflict(
            f"Version {number}'s configuration is not valid any more; publish a new one."
        ) from exc
    return await commit_version(
        writer, config, if_match=if_match, change=change, rolled_back_to=number
    )


async def set_poll_interval(writer: Writer, seconds: int, *, change: audit.Change) -> bool:
    """Store the poll interval; whether it changed (and was recorded in the audit log)."""

    async def write(conn: AsyncConnection) -> bool:
        fleet = await store.read_fleet_row(conn, for_update=True)
        await store.write_poll_interval(conn, seconds)
        changed = fleet.poll_interval_seconds != seconds
        if changed:
            await audit.append(
                conn,
                actor=change.actor,
                action=audit.SETTINGS_UPDATE,
                target="settings",
                detail={
                    "poll_interval_seconds": seconds,
                    "previous": fleet.poll_interval_seconds,
                    "comment": change.comment,
                },
            )
        return changed

    async with writer.lock:
        changed = await writer.database.transaction(write)
    writer.cache.set_poll_interval(seconds)
    logger.info("settings.poll_interval_changed seconds=%d", seconds)
    return changed


async def read_version_page(
    database: Database, *, limit: int, offset: int
) -> tuple[int, store.VersionPage]:
    """The current version, and one page of the history, newest first."""

    async def read(conn: AsyncConnection) -> tuple[int, store.VersionPage]:
        fleet = await store.read_fleet_row(conn)
        page = await store.read_version_page(conn, limit=limit, offset=offset)
        return fleet.current_version, page

    return await database.transaction(read)


async def read_version(database: Database, number: int) -> tuple[int, store.VersionRecord | None]:
    """The current version, and version ``number`` if it is stored."""

    async def read(conn: AsyncConnection) -> tuple[int, store.VersionRecord | None]:
        fleet = await store.read_fleet_row(conn)
        return fleet.current_version, await store.read_version(conn, number)

    return await database.transaction(read)
