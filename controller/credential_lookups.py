"""Agent credentials read from the database in groups: one query for every agent id
asked about within a few milliseconds, not one transaction each.

A fleet whose agents first poll a replica together (a group of new registrations, a
replica that just started, a revocation that cleared every cache) would otherwise cost
one transaction per agent, and crowd the pool. ``read(agent_id)`` joins the group being
gathered (or the read in flight for that id), and the group is read
CREDENTIAL_LOOKUP_WINDOW_SECONDS after its first id, at most
CREDENTIAL_LOOKUP_MAX_AGENTS ids per query. A failed read fails each of its askers
alike (``Unavailable`` when the database is away).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any, Final

from controller import store
from controller.db import Database

CREDENTIAL_LOOKUP_WINDOW_SECONDS: Final = 0.002
CREDENTIAL_LOOKUP_MAX_AGENTS: Final = 500

Credential = store.AgentCredential | None


class CredentialLookups:
    """Reads agent credentials in groups; concurrent askers of one id share its read."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._pending: dict[uuid.UUID, asyncio.Future[Credential]] = {}
        self._gathering: list[uuid.UUID] = []
        self._reads: set[asyncio.Task[None]] = set()

    def read(self, agent_id: uuid.UUID) -> asyncio.Future[Credential]:
        """The stored credential of ``agent_id`` (None: never registered); shielded, so
        one asker going away does not cancel the others' answer."""
        pending = self._pending.get(agent_id)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            pending.add_done_callback(_retrieve)
            self._pending[agent_id] = pending
            self._gathering.append(agent_id)
            if len(self._gathering) == 1:
                self._start(self._read_group(delay_seconds=CREDENTIAL_LOOKUP_WINDOW_SECONDS))
            elif len(self._gathering) >= CREDENTIAL_LOOKUP_MAX_AGENTS:
                self._start(self._read_group(delay_seconds=0.0))
        return asyncio.shield(pending)

    def _start(self, read: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(read)
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _read_group(self, *, delay_seconds: float) -> None:
        if delay_seconds:
            await asyncio.sleep(delay_seconds)
        group, self._gathering = self._gathering, []
        if not group:
            return
        try:
            found = await self._database.transaction(
                lambda conn: store.read_agent_credentials(conn, group)
            )
        except BaseException as exc:
            for agent_id in group:
                _settle(self._pending.pop(agent_id), exc=exc)
            if not isinstance(exc, Exception):
                raise
            return
        for agent_id in group:
            _settle(self._pending.pop(agent_id), result=found.get(agent_id))


def _settle(
    future: asyncio.Future[Credential],
    *,
    result: Credential = None,
    exc: BaseException | None = None,
) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(result)
    elif isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)


def _retrieve(future: asyncio.Future[Credential]) -> None:
    """An error nobody awaited (its askers went away) is not logged as unretrieved."""
    if not future.cancelled():
        future.exception()
