"""The controller's tables, its database engine, and the transactions run on it.

The schema itself is owned by the alembic migrations; these ``Table`` objects describe
it for queries, and a test checks that the migrated database matches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    false,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from common.errors import Conflict, Unavailable
from common.tasks import finish_within
from controller.constants import (
    DATABASE_CONNECT_TIMEOUT_SECONDS,
    DATABASE_TIMEOUT_SECONDS,
    SQLITE_BUSY_TIMEOUT_MILLISECONDS,
)
from controller.db_clock import DATABASE_CLOCK
from controller.db_outages import OutageReport

T = TypeVar("T")

MAX_ACTOR_CHARS = 200
MAX_TARGET_CHARS = 255
MAX_REASON_CHARS = 32

logger = logging.getLogger(__name__)

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
    }
)

# The fleet's single row: the current version, the poll interval, the revocation count,
# the highest version seen in the fleet.
fleet_table = Table(
    "fleet_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("current_version", Integer, nullable=False),
    Column("poll_interval_seconds", Integer, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Bumped by every revocation (of an agent or of a named credential): replicas drop
    # their cached agent credentials and reload the named ones on a change.
    Column("revocations", Integer, nullable=False, server_default="0"),
    # Bumped by every named credential issued: replicas reload the named ones on a change.
    Column("credentials_issued", Integer, nullable=False, server_default="0"),
    # The highest version any agent reported applying, or any replica served: a database
    # restored from an older copy may be behind it, and versions are allocated above it.
    Column("highest_reported_version", Integer, nullable=False, server_default="0"),
    # The staged rollout running or paused (controller.staged_engine), if any: while it
    # is set, POST /config and POST /config/rollback answer 409.
    Column("active_rollout", String(36), nullable=True),
)

config_versions = Table(
    "config_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Who stored the version and why (null for versions older than the history columns),
    # and the version whose content a rollback restored.
    Column("created_by", String(MAX_ACTOR_CHARS), nullable=True),
    Column("comment", Text, nullable=True),
    Column("rolled_back_to", Integer, nullable=True),
)

# The audit log: one hash-chained entry per state-changing admin action (controller.audit).
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", String(MAX_ACTOR_CHARS), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(MAX_TARGET_CHARS), nullable=False),
    Column("detail", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("hostname", String(253), nullable=False),
    Column("labels", JSON, nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("registered_at", DateTime(timezone=True), nullable=False),
    Column("assigned_version", Integer, nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=True),
    Column("applied_version", Integer, nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # The agent's latest poll said its worker held a configuration the agent did not send.
    Column("worker_drift", Boolean, nullable=False, server_default=false()),
    # When a replica's ledger first saw the agent report applied_at_version (the poll
    # time): the rollout view's publish-to-confirmed seconds. Both are kept while the
    # agent vouches for no version (its worker restarted, or could not be read) and move
    # only when it confirms another one: confirming the same version again (the worker
    # handed it anew) is not a later apply of the rollout.
    Column("applied_at", DateTime(timezone=True), nullable=True),
    Column("applied_at_version", Integer, nullable=True),
    # The version the agent's worker refused or could not be handed, and why (a slug);
    # null once a later poll reports no failure.
    Column("apply_failed_version", Integer, nullable=True),
    Column("apply_failed_reason", String(MAX_REASON_CHARS), nullable=True),
    # The SHA-256 of the registering credential's scope and the Idempotency-Key the agent
    # registered with (controller.registration): a retry with that key finds this agent.
    Column("registration_key", String(64), nullable=True),
    Index("ix_agents_registered_at", "registered_at", "id"),
    Index("uq_agents_registration_key", "registration_key", unique=True),
    # Half of each page left free: a sighting's UPDATE stays on its page (migration 0011).
    postgresql_with={"fillfactor": 50},
)

# Staged rollouts (POST /rollouts): the whole state of each, so that any replica can
# drive one (under the lease) and none loses or repeats a step.
staged_rollouts = Table(
    "staged_rollouts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("steps", JSON, nullable=False),
    # The index in steps of the step in hand, and the cohort's size at each step reached.
    Column("step", Integer, nullable=False),
    Column("cohort_sizes", JSON, nullable=False),
    Column("bake_seconds", Integer, nullable=False),
    Column("max_error_rate", Float, nullable=False),
    Column("min_requests", Integer, nullable=False),
    Column("baseline_version", Integer, nullable=False),
    Column("candidate_version", Integer, nullable=False),
    # The version that ended it: the candidate (completed) or the rollback's.
    Column("final_version", Integer, nullable=True),
    # Agents whose cohort hash is at most this are in the cohort (common.cohorts).
    Column("threshold", BigInteger, nullable=False),
    Column("step_started_at", DateTime(timezone=True), nullable=False),
    # The fleet's hit totals of both versions when the step's bake began, and the deltas
    # the latest judgement saw.
    Column("step_totals", JSON, nullable=False),
    Column("judged", JSON, nullable=True),
    # Why it is in its state (a pause, a wait for requests, a rollback).
    Column("reason", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(MAX_ACTOR_CHARS), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The replica driving it, until when (compare-and-set; another takes over after).
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", DateTime(timezone=True), nullable=True),
)

# Who is in a staged rollout's cohort, and from which step: the fleet views judge a
# member against the candidate, everyone else against the current version.
staged_members = Table(
    "staged_members",
    metadata,
    Column(
        "rollout_id",
        String(36),
        ForeignKey("staged_rollouts.id", ondelete="CASCADE", name="fk_staged_members_rollout"),
        primary_key=True,
    ),
    Column("agent_id", String(36), primary_key=True),
    Column("step", Integer, nullable=False),
)

# Named credentials (POST /credentials): only the SHA-256 of each token is kept. A name
# is never reused, revoked or not, so whatever recorded it names one credential.
credentials = Table(
    "credentials",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# The fleet's GET /hit outcomes per configuration version, as agents report them: every
# replica adds its sums with an atomic upsert (controller.hit_totals).
version_hits = Table(
    "version_hits",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def utcnow() -> dt.datetime:
    """Now, on the database's clock as this process reckons it (controller/db_clock.py):
    every time a replica stores, and every "now" it compares them with."""
    return DATABASE_CLOCK.utcnow()


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; every time fleetconf stores is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own implicit BEGIN is switched off; _sqlite_begin says BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MILLISECONDS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Take the write lock when the transaction starts, not at its first write: two
    # writers then queue on busy_timeout instead of failing on a stale snapshot.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    """An async engine for ``url``; SQLite gets WAL, a busy timeout, BEGIN IMMEDIATE.
    PostgreSQL holds ``pool_size`` connections and opens up to ``max_overflow`` more."""
    if is_sqlite(url):
        prepare_sqlite_file(url)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        pool_timeout=DATABASE_TIMEOUT_SECONDS,
        connect_args={
            "connect_timeout": DATABASE_CONNECT_TIMEOUT_SECONDS,
            # A database host that vanished (no RST, no answer) breaks the connection
            # within seconds, rather than after the kernel's retransmissions (minutes).
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 15_000,
        },
    )


async def plan_for_these_values(conn: AsyncConnection) -> None:
    """Have PostgreSQL plan this transaction's statements for their own parameters, even
    those the driver prepared (a no-op on SQLite).

    For lookups by lists of keys in the agents table: a generic plan, made while a new
    deployment's table was nearly empty, kept scanning the whole table once a storm had
    filled it (a registration group's key lookup took 0.4 ms at 300 agents and 27 ms at
    19,000, and group commit slowed as the fleet grew)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Translate driver failures into fleetconf errors at the storage boundary."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict("A concurrent write changed the same record; retry the request.") from exc
    except (DBAPIError, PoolTimeoutError, OSError, TimeoutError) as exc:
        raise Unavailable("The database is unavailable; retry shortly.") from exc


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class Database:
    """One application's database: its engine, the transactions still running, and the
    report of those that timed out or failed. Built when the app starts, disposed when it
    stops."""

    def __init__(self, engine: AsyncEngine, *, outages: OutageReport | None = None) -> None:
        self.engine = engine
        self.outages = outages or OutageReport()
        # Transactions still running, including those whose caller stopped waiting (a
        # timeout, a shutdown): the engine is disposed only once they ended.
        self._running: set[asyncio.Future[Any]] = set()

    async def transaction(
        self,
        work: Callable[[AsyncConnection], Awaitable[T]],
        *,
        timeout_seconds: float = DATABASE_TIMEOUT_SECONDS,
    ) -> T:
        """Run ``work`` in one transaction, committed on success; failures become 503/409.

        The caller waits ``timeout_seconds`` at most. A database that stopped
        answering (silent, not refusing) costs a 503 then, not a request that hangs: the
        transaction is cancelled and left to end on its own (the driver first tries to
        cancel the query on the server, and the connection may wait for the network),
        while the caller has its answer and releases whatever it holds.
        """
        task = asyncio.ensure_future(self._run(work))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        try:
            # Not asyncio.wait_for: on Python 3.11 a caller cancelled in the same turn of
            # the loop as the transaction ended got the transaction's outcome instead of
            # its cancellation, and a loop retrying on Unavailable then ran on.
            async with asyncio.timeout(timeout_seconds):
                return await asyncio.shield(task)
        except TimeoutError:
            if task.done():
                # It ended as the time ran out: its own outcome, not a 503 for a write
                # that was committed.
                return task.result()
            task.cancel()
            task.add_done_callback(_retrieve)
            self.outages.note(timeout_seconds)
            raise Unavailable("The database did not answer in time; retry shortly.") from None
        except asyncio.CancelledError:
            # The caller is being stopped (a shutdown): the transaction in hand is let
            # finish, not cancelled half-way through the driver's own clean-up.
            task.add_done_callback(_retrieve)
            raise

    async def _run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        try:
            with database_errors():
                async with self.engine.begin() as conn:
                    return await work(conn)
        except Unavailable as exc:
            # A 503 the log should explain (a busy SQLite file, a lost connection, ...).
            if exc.__cause__ is not None:
                self.outages.note_failure(exc.__cause__)
            raise

    async def close(self, timeout_seconds: float) -> None:
        """Give the transactions still running up to ``timeout_seconds`` to end, then
        dispose of the engine within as long again.

        A transaction cancelled later, by the event loop's final sweep, would be cut off
        inside the driver's own clean-up.
        """
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_seconds)
        await finish_within(self.engine.dispose(), timeout_seconds=timeout_seconds)
