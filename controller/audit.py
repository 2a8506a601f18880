"""The audit log: one hash-chained entry per state-changing admin action.

Each entry is ``{seq, at, actor, action, target, detail, prev_hash, hash}``, where::

    hash = SHA-256(prev_hash ‖ canonical JSON of {seq, at, actor, action, target, detail})

``prev_hash`` is the previous entry's ``hash`` (64 zeros for entry 1), both as lowercase
hex, and ``‖`` joins the ASCII hex of ``prev_hash`` to the UTF-8 bytes of the JSON. The
canonical JSON has its keys sorted, no spaces (``,`` and ``:`` separators), non-ASCII
characters as themselves (UTF-8, not ``\\u`` escapes), and ``at`` as a string:
ISO 8601 in UTC with microseconds, ``2026-11-29T08:00:00.000000Z``, the precision both
SQLite and PostgreSQL keep, so an entry hashes the same after it was read back.

An entry is appended in the transaction of the change it records (:func:`append`), so
there is never a change without its entry, nor an entry for a change that rolled back.
``append`` takes the fleet row's lock (``SELECT … FOR UPDATE``, a no-op when the caller
holds it already), as every write does: replicas appending at once are ordered by it,
and the sequence numbers stay consecutive.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from controller import store
from controller.constants import AUDIT_VERIFY_CHUNK_ENTRIES
from controller.db import Database, as_utc, audit_log, utcnow

GENESIS_HASH = "0" * 64

# The actions recorded so far; an action is a dotted name, resource first.
CONFIG_PUBLISH = "config.publish"
CONFIG_ROLLBACK = "config.rollback"
SETTINGS_UPDATE = "settings.update"
AGENT_REVOKE = "agent.revoke"
CREDENTIAL_CREATE = "credential.create"
CREDENTIAL_REVOKE = "credential.revoke"
# Staged rollouts (controller.staged_engine): every change of a rollout's state.
ROLLOUT_START = "rollout.start"
ROLLOUT_PROMOTE = "rollout.promote"
ROLLOUT_COMPLETE = "rollout.complete"
ROLLOUT_ROLL_BACK = "rollout.rollback"
ROLLOUT_PAUSE = "rollout.pause"
ROLLOUT_RESUME = "rollout.resume"
ROLLOUT_ABORT = "rollout.abort"
ACTIONS = (
    CONFIG_PUBLISH,
    CONFIG_ROLLBACK,
    SETTINGS_UPDATE,
    AGENT_REVOKE,
    CREDENTIAL_CREATE,
    CREDENTIAL_REVOKE,
    ROLLOUT_START,
    ROLLOUT_PROMOTE,
    ROLLOUT_COMPLETE,
    ROLLOUT_ROLL_BACK,
    ROLLOUT_PAUSE,
    ROLLOUT_RESUME,
    ROLLOUT_ABORT,
)


@dataclass(frozen=True, kw_only=True)
class Change:
    """Who makes a change and why: the principal's name and the X-Change-Comment."""

    actor: str
    comment: str | None = None


@dataclass(frozen=True, kw_only=True)
class Entry:
    seq: int
    at: str
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str


def format_at(moment: dt.datetime) -> str:
    """``at`` as it is hashed and shown: UTC, microseconds, ``Z``."""
    return as_utc(moment).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8; NaN and infinities are refused."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8")


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    at: str,
    actor: str,
    action: str,
    target: str,
    detail: Mapping[str, Any],
) -> str:
    fields = {
        "seq": seq,
        "at": at,
        "actor": actor,
        "action": action,
        "target": target,
        "detail": dict(detail),
    }
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(fields)).hexdigest()


def _entry(row: Any) -> Entry:
    return Entry(
        seq=row.seq,
        at=format_at(row.at),
        actor=row.actor,
        action=row.action,
        target=row.target,
        detail=dict(row.detail),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _computed_hash(entry: Entry) -> str:
    return entry_hash(
        entry.prev_hash,
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        detail=entry.detail,
    )


async def append(
    conn: AsyncConnection, *, actor: str, action: str, target: str, detail: Mapping[str, Any]
) -> Entry:
    """Append one entry in the caller's transaction; it commits or rolls back with it."""
    await store.read_fleet_row(conn, for_update=True)
    query = select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
    last = (await conn.execute(query)).one_or_none()
    seq, prev_hash = (1, GENESIS_HASH) if last is None else (last.seq + 1, last.hash)
    moment = utcnow()
    entry = Entry(
        seq=seq,
        at=format_at(moment),
        actor=actor,
        action=action,
        target=target,
        detail=dict(detail),
        prev_hash=prev_hash,
        hash="",
    )
    entry = dataclasses.replace(entry, hash=_computed_hash(entry))
    row = dataclasses.asdict(entry)
    await conn.execute(audit_log.insert().values({**row, "at": moment}))
    return entry


@dataclass(frozen=True, kw_only=True)
class EntryPage:
    items: list[Entry]
    total: int


async def read_page(database: Database, *, limit: int, offset: int) -> EntryPage:
    """Entries newest first, and how many there are in all."""

    async def read(conn: AsyncConnection) -> EntryPage:
        query = select(audit_log).order_by(audit_log.c.seq.desc()).limit(limit).offset(offset)
        rows = (await conn.execute(query)).all()
        count = select(func.count()).select_from(audit_log)
        total = int((await conn.execute(count)).scalar_one())
        return EntryPage(items=[_entry(row) for row in rows], total=total)

    return await database.transaction(read)


@dataclass(frozen=True, kw_only=True)
class Verification:
    """The chain walked in seq order: intact or not, and where it first breaks.

    An entry is bad when its seq does not follow the previous one, its prev_hash is not
    the previous entry's hash, or its hash is not the hash of its own fields. An edited
    entry is bad itself; a deleted one makes the entry after it bad.
    """

    entries: int
    first_bad_seq: int | None
    last_seq: int | None
    last_hash: str | None

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


def _is_bad(entry: Entry, expected_seq: int, expected_prev: str) -> bool:
    return (
        entry.seq != expected_seq
        or entry.prev_hash != expected_prev
        or entry.hash != _computed_hash(entry)
    )


async def verify(database: Database, *, chunk: int = AUDIT_VERIFY_CHUNK_ENTRIES) -> Verification:
    """Walk the whole chain, ``chunk`` entries per short transaction."""
    entries, first_bad = 0, None
    expected_seq, expected_prev = 1, GENESIS_HASH
    last: Entry | None = None
    while True:
        after = 0 if last is None else last.seq
        batch = await database.transaction(functools.partial(_read_after, after=after, limit=chunk))
        for entry in batch:
            if first_bad is None and _is_bad(entry, expected_seq, expected_prev):
                first_bad = entry.seq
            expected_seq, expected_prev = entry.seq + 1, entry.hash
            last = entry
        entries += len(batch)
        if len(batch) < chunk:
            break
    return Verification(
        entries=entries,
        first_bad_seq=first_bad,
        last_seq=None if last is None else last.seq,
        last_hash=None if last is None else last.hash,
    )


async def _read_after(conn: AsyncConnection, *, after: int, limit: int) -> list[Entry]:
    query = select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(limit)
    return [_entry(row) for row in (await conn.execute(query)).all()]
