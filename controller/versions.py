"""The configuration's versions: immutable, numbered, allocated under a row lock; and
reading them back.

Every write locks the fleet table's single row (``SELECT … FOR UPDATE`` on
PostgreSQL), so replicas writing to one database at once allocate consecutive,
distinct versions, and ``If-Match`` is an exact compare-and-set. Within one process an
``asyncio.Lock`` orders writers too, which is all SQLite needs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from common.errors import PreconditionFailed
from common.models import WorkerConfig
from controller import store
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


async def commit_version(
    writer: Writer, config: WorkerConfig, *, if_match: frozenset[int] | None
) -> Committed:
    """Make ``config`` the current version, or return the current one if it is equal.

    ``if_match`` (the versions an If-Match header names) turns the write into
    compare-and-set: 412 unless the current version is one of them.
    """
    body = config.canonical_json()

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
        record = await store.insert_version(conn, fleet.current_version + 1, body)
        return Committed(record=record, created=True, poll_interval_seconds=interval)

    async with writer.lock:
        committed = await writer.database.transaction(write)
    writer.cache.replace(committed.record, committed.poll_interval_seconds)
    if committed.created:
        logger.info("config.published version=%d", committed.record.version)
    return committed


async def set_poll_interval(writer: Writer, seconds: int) -> None:
    async def write(conn: AsyncConnection) -> None:
        await store.read_fleet_row(conn, for_update=True)
        await store.write_poll_interval(conn, seconds)

    async with writer.lock:
        await writer.database.transaction(write)
    writer.cache.set_poll_interval(seconds)
    logger.info("settings.poll_interval_changed seconds=%d", seconds)


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
