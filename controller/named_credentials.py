"""Named credentials: tokens an admin issues with a role (admin or viewer), each under a
name that records who made a change.

They are few, so every replica holds the unrevoked ones in memory, keyed by the SHA-256
of the token: recognising one, or refusing an unknown token, costs no database work.
The replica that issues or revokes one updates its own set at once; the others reload
theirs when the fleet row's counts move (``credentials_issued``, ``revocations``), which
they read at every refresh: within milliseconds of the hint that follows the commit,
within ``CACHE_REFRESH_SECONDS`` without Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncConnection

from common.auth import hash_token, new_secret, tokens_equal
from common.errors import Conflict, FleetconfError
from controller import audit, credential_store
from controller.constants import NAMED_CREDENTIAL_PREFIX
from controller.db import Database
from controller.store import FleetRow

logger = logging.getLogger(__name__)

# The roles a named credential may have (the values of credentials.Role's ADMIN, VIEWER).
NAMED_ROLES: Final = ("admin", "viewer")


@dataclass(frozen=True, kw_only=True)
class NamedCredential:
    name: str
    role: str
    token_hash: str


@dataclass(frozen=True, kw_only=True)
class IssuedCredential:
    """A credential just created: the only time its token is known."""

    name: str
    role: str
    token: str
    created_at: dt.datetime


def issue_named_token() -> str:
    return NAMED_CREDENTIAL_PREFIX + new_secret()


class NamedCredentials:
    """This replica's unrevoked named credentials, looked up by the hash of the token."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._by_hash: dict[str, NamedCredential] = {}
        # The fleet row's (revocations, credentials_issued) the set is current with.
        self._counts: tuple[int, int] | None = None
        # Reloads one at a time, so an older read never replaces a newer one.
        self._reloading = asyncio.Lock()

    def identify(self, token: str) -> NamedCredential | None:
        """The credential ``token`` stands for, or None; from memory only."""
        if not token.startswith(NAMED_CREDENTIAL_PREFIX):
            return None
        token_hash = hash_token(token)
        # The dict compares digests, never the token itself; the hash is compared again
        # in constant time all the same.
        entry = self._by_hash.get(token_hash)
        if entry is None or not tokens_equal(token_hash, entry.token_hash):
            return None
        return entry

    async def follow(self, fleet: FleetRow) -> None:
        """Reload when the fleet row says a credential was issued or revoked since. A
        failed reload is logged, and tried again at the next refresh."""
        if self._counts == (fleet.revocations, fleet.credentials_issued):
            return
        with contextlib.suppress(FleetconfError):
            await self.reload()

    async def reload(self) -> None:
        """Read the unrevoked credentials. When that fails every named credential is
        refused until a reload succeeds: one may have been revoked meanwhile."""
        async with self._reloading:
            try:
                active = await self._database.transaction(credential_store.read_active_credentials)
            except FleetconfError:
                logger.warning(
                    "credentials.reload_failed held=%d: refused until reloaded", len(self._by_hash)
                )
                self._by_hash = {}
                self._counts = None
                raise
            self._by_hash = {
                item.token_hash: NamedCredential(
                    name=item.name, role=item.role, token_hash=item.token_hash
                )
                for item in active.items
                if item.role in NAMED_ROLES
            }
            self._counts = (active.revocations, active.credentials_issued)
        logger.info("credentials.loaded active=%d", len(self._by_hash))

    async def add(self, credential: NamedCredential) -> None:
        """Accept a credential just issued here (after a reload in progress, if any)."""
        async with self._reloading:
            self._by_hash[credential.token_hash] = credential

    async def remove(self, name: str) -> None:
        """Refuse a credential just revoked here, after a reload in progress: one that
        read the database before the revocation cannot bring it back."""
        async with self._reloading:
            self._by_hash = {h: c for h, c in self._by_hash.items() if c.name != name}


async def create_credential(
    database: Database,
    registry: NamedCredentials,
    *,
    name: str,
    role: str,
    change: audit.Change,
) -> IssuedCredential:
    """Issue a token for ``name``; 409 when the name is taken, even by a revoked one. The
    issue is recorded in the audit log, in its transaction (never the token)."""
    token = issue_named_token()
    token_hash = hash_token(token)
    created_by = change.actor

    async def insert(conn: AsyncConnection) -> dt.datetime:
        if await credential_store.name_taken(conn, name):
            raise Conflict(
                f"A credential named {name!r} exists or existed; the names of revoked "
                "credentials are not reused."
            )
        created_at = await credential_store.insert_credential(
            conn, name=name, role=role, token_hash=token_hash, created_by=created_by
        )
        await audit.append(
            conn,
            actor=change.actor,
            action=audit.CREDENTIAL_CREATE,
            target=f"credentials/{name}",
            detail={"name": name, "role": role, "comment": change.comment},
        )
        return created_at

    created_at = await database.transaction(insert)
    await registry.add(NamedCredential(name=name, role=role, token_hash=token_hash))
    logger.info("credential.created name=%s role=%s created_by=%s", name, role, created_by)
    return IssuedCredential(name=name, role=role, token=token, created_at=created_at)


async def revoke_credential(
    database: Database, registry: NamedCredentials, name: str, *, change: audit.Change
) -> bool:
    """Revoke ``name``; refused here at once. False when it is unknown or revoked already.
    A revocation is recorded in the audit log, in its transaction."""

    async def write(conn: AsyncConnection) -> bool:
        if not await credential_store.revoke_credential(conn, name):
            return False
        await audit.append(
            conn,
            actor=change.actor,
            action=audit.CREDENTIAL_REVOKE,
            target=f"credentials/{name}",
            detail={"name": name, "comment": change.comment},
        )
        return True

    revoked = await database.transaction(write)
    if revoked:
        await registry.remove(name)
        logger.info("credential.revoked name=%s", name)
    return revoked
