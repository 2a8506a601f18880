"""Writing the configuration: immutable numbered versions, allocated under a row lock.

Every write locks the single ``fleet_state`` row (``SELECT … FOR UPDATE`` on
PostgreSQL), so replicas writing to one database at once allocate consecutive,
distinct versions, and ``If-Match`` is an exact compare-and-set. Within one process an
``asyncio.Lock`` orders writers too, which is all SQLite needs.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.errors import PreconditionFailed
from common.models import WorkerConfig
from controller import store
from controller.cache import ConfigCache, etag_for
from controller.db import in_transaction

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Published:
    record: store.VersionRecord
    created: bool
    poll_interval_seconds: int | None


@dataclass(frozen=True, kw_only=True)
class Writer:
    """Everything a configuration write needs, bundled once per application."""

    engine: AsyncEngine
    cache: ConfigCache
    lock: asyncio.Lock


async def publish_config(
    writer: Writer, config: WorkerConfig, *, if_match: frozenset[int] | None
) -> Published:
    """Make ``config`` the current version, or return the current one if it is equal.

    ``if_match`` (the versions an If-Match header names) turns the write into
    compare-and-set: 412 unless the current version is one of them.
    """
    body = config.canonical_json()

    async def write(conn: AsyncConnection) -> Published:
        state = await store.read_fleet_state(conn, for_update=True)
        if if_match is not None and state.current_version not in if_match:
            raise PreconditionFailed(
                f"If-Match does not name the current version {etag_for(state.current_version)}."
            )
        current = await store.read_version(conn, state.current_version)
        interval = state.poll_interval_seconds
        if current is not None and current.body == body:
            return Published(record=current, created=False, poll_interval_seconds=interval)
        record = await store.insert_version(conn, state.current_version + 1, body)
        return Published(record=record, created=True, poll_interval_seconds=interval)

    async with writer.lock:
        published = await in_transaction(writer.engine, write)
    writer.cache.replace(published.record, published.poll_interval_seconds)
    if published.created:
        logger.info("config.published version=%d", published.record.version)
    return published


async def set_poll_interval(writer: Writer, seconds: int) -> None:
    async def write(conn: AsyncConnection) -> None:
        await store.read_fleet_state(conn, for_update=True)
        await store.write_poll_interval(conn, seconds)

    async with writer.lock:
        await in_transaction(writer.engine, write)
    writer.cache.set_poll_interval(seconds)
    logger.info("settings.poll_interval_changed seconds=%d", seconds)
