"""Registering agents (a new id, a per-agent token of which only the hash is kept), and
revoking them.

Registrations are written in groups (:mod:`controller.registration_batch` queues them);
:func:`write_registrations` is one group's transaction. A registration may carry an
idempotency key (the agent's ``Idempotency-Key``, a UUID it keeps until it holds an
identity). Only a hash of the key, taken with the registering credential's scope, is
stored with the agent, unique. A retry with the same key, from the same credential,
within REGISTRATION_KEY_TTL_SECONDS, for the same hostname and labels, gets the same
agent, with a fresh token that replaces the one whose answer was lost; but only while
that agent never polled (whoever polled had the answer) and is not revoked. Any other
reuse of a key is refused (409), so a key never yields a token for an agent in use.
Requests of one group that share a key are answered as if they came one after another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from common.auth import SECRET_BYTES, hash_token, secret_of
from common.errors import Conflict, FleetconfError
from controller import audit, registration_store, store
from controller.constants import REGISTRATION_KEY_TTL_SECONDS
from controller.credentials import AgentTokens, Principal, issue_agent_token
from controller.db import Database, utcnow
from controller.registration_store import KeyedAgent

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Registration:
    agent_id: uuid.UUID
    agent_token: str = field(repr=False)
    token_hash: str = field(repr=False)
    # A retry with the key of an earlier registration: the same agent, a fresh token.
    replayed: bool = False


@dataclass(frozen=True, kw_only=True)
class RegistrationRequest:
    """One agent asking to register; ``key_hash``: its idempotency key, scoped."""

    hostname: str
    labels: Mapping[str, str]
    assigned_version: int
    key_hash: str | None = None


Outcome = Registration | FleetconfError


def registration_key_hash(registrar: Principal, key: uuid.UUID) -> str:
    """The stored form of an idempotency key: scoped to the credential that registers
    (the registration token, the admin token, or one named admin credential), so one
    credential's key never names another's agent."""
    scope = f"{registrar.role.value}:{registrar.name or ''}"
    return hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()


async def write_registrations(
    conn: AsyncConnection, requests: Sequence[RegistrationRequest]
) -> list[Outcome]:
    """One group's transaction: each request's outcome, in order. New agents are inserted
    in one statement; a key seen before is answered from its agent (or refused).

    Requests that share a key are answered as if they came one after another: the first
    decides, and each later one is a retry of it, refused (409) unless its hostname and
    labels are the same (then it gets the same agent with a fresh token)."""
    now = utcnow()
    entropy = _Entropy(len(requests))
    keys = {request.key_hash for request in requests if request.key_hash is not None}
    known = await registration_store.read_keyed_agents(conn, keys) if keys else {}
    # The rows of this group's new agents that have a key, by key: not inserted yet.
    unwritten: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    outcomes: list[Outcome] = []
    for request in requests:
        key = request.key_hash
        if key is not None and key in known:
            outcome = await _replay(conn, request, known[key], now, unwritten.get(key))
        else:
            outcome = _new_agent(request, now, rows, entropy)
            if key is not None:
                # Seen by the group's later requests with the key as a retry would see it.
                known[key] = _keyed(request, outcome.agent_id, now)
                unwritten[key] = rows[-1]
        outcomes.append(outcome)
    if rows:
        await registration_store.insert_agents(conn, rows)
    return outcomes


class _Entropy:
    """The randomness of a group's new agents (an id and a token secret each), drawn from
    the operating system in one call, not two per agent.

    Each ``os.urandom`` lets go of the GIL; on the registration thread, while a storm
    keeps the replica's event loop busy, taking it back waited up to the interpreter's
    switch interval (5 ms) every time, and the group writer crawled at 500-750 agents a
    second. The bytes are the same CSPRNG's, so ids and secrets are as random as
    ``uuid.uuid4()`` and ``new_secret()`` make them."""

    _PER_AGENT = 16 + SECRET_BYTES

    def __init__(self, agents: int) -> None:
        self._bytes = secrets.token_bytes(self._PER_AGENT * agents)
        self._at = 0

    def agent(self) -> tuple[uuid.UUID, str]:
        """A fresh (agent id, token secret)."""
        start = self._at
        self._at += self._PER_AGENT
        chunk = self._bytes[start : self._at]
        if len(chunk) != self._PER_AGENT:
            raise RuntimeError("more new agents than the group's requests")
        return uuid.UUID(bytes=chunk[:16], version=4), secret_of(chunk[16:])


def _new_agent(
    request: RegistrationRequest,
    now: dt.datetime,
    rows: list[dict[str, Any]],
    entropy: _Entropy,
) -> Registration:
    agent_id, secret = entropy.agent()
    token = issue_agent_token(agent_id, secret)
    token_hash = hash_token(token)
    rows.append(
        {
            "id": str(agent_id),
            "hostname": request.hostname,
            "labels": dict(request.labels),
            "token_hash": token_hash,
            "registered_at": now,
            "assigned_version": request.assigned_version,
            "registration_key": request.key_hash,
        }
    )
    return Registration(agent_id=agent_id, agent_token=token, token_hash=token_hash)


def _keyed(request: RegistrationRequest, agent_id: uuid.UUID, now: dt.datetime) -> KeyedAgent:
    """The agent a new registration's key names, as the key's next use reads it."""
    return KeyedAgent(
        agent_id=agent_id,
        hostname=request.hostname,
        labels=dict(request.labels),
        registered_at=now,
        polled=False,
        revoked=False,
    )


async def _replay(
    conn: AsyncConnection,
    request: RegistrationRequest,
    earlier: KeyedAgent,
    now: dt.datetime,
    unwritten: dict[str, Any] | None,
) -> Outcome:
    """A retry of an earlier registration: its agent with a fresh token, or 409.
    ``unwritten``: the earlier agent's row when it is one of this group's new agents."""
    refusal = _replay_refusal(request, earlier, now)
    if refusal is not None:
        return Conflict(
            f"This Idempotency-Key was used by an earlier registration {refusal}; register "
            "with a new key."
        )
    token = issue_agent_token(earlier.agent_id)
    token_hash = hash_token(token)
    if unwritten is None:
        await registration_store.replace_token(conn, earlier.agent_id, token_hash)
    else:
        unwritten["token_hash"] = token_hash
    return Registration(
        agent_id=earlier.agent_id, agent_token=token, token_hash=token_hash, replayed=True
    )


def _replay_refusal(
    request: RegistrationRequest, earlier: KeyedAgent, now: dt.datetime
) -> str | None:
    """Why a retry may not have the earlier registration's agent; None when it may."""
    if earlier.revoked:
        return "whose agent was revoked"
    if earlier.polled:
        return "whose agent has polled since"
    if (now - earlier.registered_at).total_seconds() > REGISTRATION_KEY_TTL_SECONDS:
        return f"more than {REGISTRATION_KEY_TTL_SECONDS:.0f} s ago"
    if (earlier.hostname, dict(earlier.labels)) != (request.hostname, dict(request.labels)):
        return "with another hostname or labels"
    return None


async def revoke_agent(
    database: Database,
    agent_tokens: AgentTokens,
    agent_id: uuid.UUID,
    *,
    change: audit.Change,
) -> bool:
    """Revoke the agent; its token is refused here at once. False when it is unknown or
    was revoked already. A revocation is recorded in the audit log, in its transaction."""

    async def write(conn: AsyncConnection) -> bool:
        await store.read_fleet_row(conn, for_update=True)
        if not await store.revoke_agent(conn, agent_id):
            return False
        await audit.append(
            conn,
            actor=change.actor,
            action=audit.AGENT_REVOKE,
            target=f"agents/{agent_id}",
            detail={"agent_id": str(agent_id), "comment": change.comment},
        )
        return True

    revoked = await database.transaction(write)
    if revoked:
        agent_tokens.forget(agent_id)
        logger.info("agent.revoked agent_id=%s", agent_id)
    return revoked
