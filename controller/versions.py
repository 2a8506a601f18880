"""The configuration's versions: immutable, numbered, allocated under a row lock; and
reading them back.

Every write locks the fleet table's single row (``SELECT … FOR UPDATE`` on
PostgreSQL), so replicas writing to one database at once allocate distinct versions, and
``If-Match`` is an exact compare-and-set. Within one process an ``asyncio.Lock`` orders
writers too, which is all SQLite needs.

A version number is never issued twice for different content: the next version is
above the current one and above every version the fleet is known to have seen, see
:func:`next_version`. After a database was restored from an older copy that skips the
numbers the restore lost.
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
from controller.cache import ConfigCache
from controller.constants import MAX_VERSIONS_AHEAD
from controller.db import Database
from controller.etags import etag_for
from controller.ledger import Ledger

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
    ledger: Ledger


def next_version(*, current_version: int, highest_reported: int, highest_served: int) -> int:
    """The number of the next version: above the database's current version, above the
    highest version any agent reported applying (written, or still in this replica's
    ledger) and above the version this replica serves."""
    return max(current_version, highest_reported, highest_served) + 1


async def _highest_reported(conn: AsyncConnection, fleet: store.FleetRow, ledger: Ledger) -> int:
    """The highest version agents reported, believed up to MAX_VERSIONS_AHEAD above the
    current one (the fleet row's figure was bounded when it was written)."""
    at_most = fleet.current_version + MAX_VERSIONS_AHEAD
    recorded = await store.read_highest_applied(conn, at_most=at_most)
    pending = ledger.highest_pending(at_most=at_most)
    return max(fleet.highest_reported_version, recorded, pending)


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


@dataclass(frozen=True, kw_only=True)
class NewVersion:
    """A version to store: its content, who and why, and the rules of the write.

    ``if_match`` (the ETags an If-Match header names) turns the write into
    compare-and-set; ``rollout`` is the staged rollout allowed to write while it runs
    (every other write is refused then); ``make_current`` False stores a candidate that
    is not current yet; ``always_new`` stores a new version even when the content is the
    current one's (a rollback above a candidate).
    """

    body: str
    provenance: store.Provenance
    change: audit.Change
    if_match: frozenset[str] | None = None
    rollout: str | None = None
    make_current: bool = True
    always_new: bool = False


def refuse_during_rollout(fleet: store.FleetRow, allowed: str | None = None) -> None:
    """409 while a staged rollout other than ``allowed`` is running or paused."""
    active = fleet.active_rollout
    if active is not None and active != allowed:
        raise Conflict(
            f"Staged rollout {active} is in progress; pause, resume or abort it "
            f"(POST /rollouts/{active}/abort) before changing the configuration."
        )


async def write_version(conn: AsyncConnection, writer: Writer, new: NewVersion) -> Committed:
    """Store ``new`` in the caller's transaction (which this locks the fleet row in), with
    its audit entry; or return the current version if it is equal (and not always_new)."""
    fleet = await store.read_fleet_row(conn, for_update=True)
    refuse_during_rollout(fleet, new.rollout)
    current = await store.read_version(conn, fleet.current_version)
    _check_if_match(new.if_match, fleet.current_version, current)
    interval = fleet.poll_interval_seconds
    if not new.always_new and current is not None and current.body == new.body:
        return Committed(record=current, created=False, poll_interval_seconds=interval)
    stored = await store.read_highest_stored(conn)
    number = next_version(
        current_version=max(fleet.current_version, stored),
        highest_reported=await _highest_reported(conn, fleet, writer.ledger),
        highest_served=writer.cache.snapshot.version,
    )
    if number != stored + 1:
        logger.warning(
            "config.versions_skipped current_version=%d version=%d: the fleet saw "
            "versions the database does not have",
            fleet.current_version,
            number,
        )
    record = await store.insert_version(
        conn, number, new.body, new.provenance, make_current=new.make_current
    )
    await _audit_version(conn, new.change, record, previous=fleet.current_version)
    return Committed(record=record, created=True, poll_interval_seconds=interval)


def installed(writer: Writer, committed: Committed) -> Committed:
    """After the commit: this replica serves the version now current at once."""
    writer.cache.replace(committed.record, committed.poll_interval_seconds)
    if committed.created:
        position = writer.cache.position
        position.note(
            current_version=committed.record.version,
            highest_reported_version=position.highest_reported_version,
        )
        logger.info("config.published version=%d", committed.record.version)
    return committed


async def commit_version(
    writer: Writer,
    config: WorkerConfig,
    *,
    if_match: frozenset[str] | None,
    change: audit.Change,
    rolled_back_to: int | None = None,
) -> Committed:
    """Make ``config`` the current version, or return the current one if it is equal.

    ``if_match`` (the ETags an If-Match header names) turns the write into
    compare-and-set: 412 unless the current version's ETag is one of them. A new version
    is recorded in the audit log in the same transaction; ``rolled_back_to`` marks it as
    a rollback to that version's content. 409 while a staged rollout runs.
    """
    new = NewVersion(
        body=config.canonical_json(),
        provenance=store.Provenance(
            created_by=change.actor, comment=change.comment, rolled_back_to=rolled_back_to
        ),
        change=change,
        if_match=if_match,
    )
    async with writer.lock:
        committed = await writer.database.transaction(lambda conn: write_version(conn, writer, new))
    return installed(writer, committed)


async def rollback_version(
    writer: Writer, number: int, *, if_match: frozenset[str] | None, change: audit.Change
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


def _check_if_match(
    if_match: frozenset[str] | None, current_version: int, current: store.VersionRecord | None
) -> None:
    """412 unless If-Match names the current version's ETag (its number and digest)."""
    if if_match is None:
        return
    etag = None if current is None else etag_for(current.version, current.body)
    if etag not in if_match:
        shown = etag or f"of version {current_version}"
        raise PreconditionFailed(f"If-Match does not name the current version {shown}.")


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
