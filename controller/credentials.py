"""Who is calling: the admin, a viewer, a machine that may register, or a registered agent.

Admin and registration tokens are static settings; named credentials of the admin and
viewer roles are issued through ``POST /credentials`` and held in memory by every
replica (see ``controller.named_credentials``). Agent tokens are issued at
registration as ``<agent id>.<secret>``; only their SHA-256 is stored. Every comparison
is constant-time, and a verified agent credential is trusted for
``AGENT_TOKEN_CACHE_SECONDS`` so that polling does not query the database. A revocation
anywhere clears the cache of every replica (see ``ConfigCache``), so the long trust
costs no revocation delay.

Anonymous callers cost no database work after their first try: an agent id that has
no usable credential (never registered, or revoked) is remembered (``UnknownAgents``),
so the same forged ``<uuid>.x`` is refused from memory; concurrent lookups of one id
share one query; and a client that keeps failing is throttled (``FailureThrottle``),
which is consulted only when a token is not answered from memory, never on a cached
agent's poll. The negative cache is keyed by agent id, and ids are random UUIDs minted
at registration, so no agent registered later (on any replica) can be in it, and a
revocation only ever adds ids to it: neither needs to clear it.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import SecretStr

from common.auth import hash_token, new_secret, token_digest, tokens_equal
from common.errors import Forbidden, Unauthorized, Unavailable
from controller import store
from controller.constants import (
    AGENT_TOKEN_CACHE_SECONDS,
    BOOTSTRAP_ADMIN_NAME,
    UNKNOWN_AGENT_CACHE_SECONDS,
    UNKNOWN_AGENTS_CACHED,
)
from controller.credential_lookups import CredentialLookups
from controller.db import Database
from controller.named_credentials import NamedCredentials
from controller.throttle import FailureThrottle

if TYPE_CHECKING:
    from aiohttp import web


class Role(enum.Enum):
    ADMIN = "admin"
    VIEWER = "viewer"
    REGISTRATION = "registration"
    AGENT = "agent"

    @property
    def security_scheme(self) -> str:
        """The OpenAPI security scheme of this role's Bearer token."""
        return f"{self.value}Token"


# Who may call an operation, declared on it (Operation.roles); the documented
# security lists the roles in this order.
ADMIN = (Role.ADMIN,)
# Every GET of the admin API, except the list of credentials (who has access is for
# admins only).
ADMIN_READERS = (Role.ADMIN, Role.VIEWER)
REGISTRARS = (Role.REGISTRATION, Role.ADMIN)
CONFIG_READERS = (Role.AGENT, Role.REGISTRATION, Role.ADMIN)
AGENTS = (Role.AGENT,)


@dataclass(frozen=True, kw_only=True)
class Principal:
    """``name`` is who made a change: "admin" for CONTROLLER_ADMIN_TOKEN, a named
    credential's name, None for registration and agent tokens."""

    role: Role
    agent_id: uuid.UUID | None = None
    name: str | None = None
    # The agent id as text (as its token and X-Agent-ID spell it): formatting a UUID
    # on every poll would cost more than the rest of the poll's bookkeeping.
    agent_key: str | None = None


def agent_principal(agent_id: uuid.UUID) -> Principal:
    return Principal(role=Role.AGENT, agent_id=agent_id, agent_key=str(agent_id))


# The static tokens' principals, the same object on every request.
_BOOTSTRAP_ADMIN = Principal(role=Role.ADMIN, name=BOOTSTRAP_ADMIN_NAME)
_REGISTRATION = Principal(role=Role.REGISTRATION)


def issue_agent_token(agent_id: uuid.UUID, secret: str | None = None) -> str:
    """``agent_id.secret``: a fresh secret unless one (from ``secret_of``) is given."""
    return f"{agent_id}.{secret or new_secret()}"


def _agent_id_of(token: str) -> uuid.UUID | None:
    prefix, dot, _secret = token.partition(".")
    if not dot:
        return None
    try:
        return uuid.UUID(prefix)
    except ValueError:
        return None


def _matching(agent_id: uuid.UUID, token_hash: str, stored_hash: str) -> uuid.UUID | None:
    """``agent_id`` when the token's hash is the one stored for it (constant time)."""
    return agent_id if tokens_equal(token_hash, stored_hash) else None


class UnknownAgents:
    """Agent ids with no usable credential, for ``ttl_seconds``; the least recently
    asked about are dropped beyond ``max_entries``."""

    def __init__(
        self,
        *,
        max_entries: int = UNKNOWN_AGENTS_CACHED,
        ttl_seconds: float = UNKNOWN_AGENT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._added: OrderedDict[uuid.UUID, float] = OrderedDict()

    def __contains__(self, agent_id: uuid.UUID) -> bool:
        added = self._added.get(agent_id)
        if added is None:
            return False
        if self._clock() - added >= self._ttl_seconds:
            del self._added[agent_id]
            return False
        self._added.move_to_end(agent_id)
        return True

    def __len__(self) -> int:
        return len(self._added)

    def add(self, agent_id: uuid.UUID) -> None:
        self._added[agent_id] = self._clock()
        self._added.move_to_end(agent_id)
        while len(self._added) > self._max_entries:
            self._added.popitem(last=False)


class AgentTokens:
    """Verifies agent tokens against their stored hashes, with a short-lived cache."""

    def __init__(
        self, database: Database, *, cache_seconds: float = AGENT_TOKEN_CACHE_SECONDS
    ) -> None:
        self._database = database
        self._cache_seconds = cache_seconds
        self._verified: dict[uuid.UUID, tuple[str, float]] = {}
        # The verified agents again, keyed by the id as the token spells it: the hot path
        # of every poll finds them without parsing a UUID, with the principal it answers
        # and the raw digest it compares.
        self._by_prefix: dict[str, tuple[Principal, bytes, float]] = {}
        self.unknown = UnknownAgents()
        # One read per agent id at a time, whoever asks meanwhile; ids read in groups.
        self._reads = CredentialLookups(database)
        # Called with an agent id when this replica revoked it, None when one was revoked
        # elsewhere (its verification is forgotten: streams check their tokens again).
        self._on_forget: list[Callable[[uuid.UUID | None], None]] = []

    def on_forget(self, callback: Callable[[uuid.UUID | None], None]) -> None:
        self._on_forget.append(callback)

    def verify_cached(self, token: str) -> Principal | None:
        """The agent's principal if the token matches a credential verified recently;
        else None."""
        prefix, _, _ = token.partition(".")
        entry = self._by_prefix.get(prefix)
        if entry is None or time.monotonic() - entry[2] >= self._cache_seconds:
            return None
        # Raw digests compared in constant time: this runs on every poll.
        return entry[0] if hmac.compare_digest(token_digest(token), entry[1]) else None

    async def verify(self, token: str) -> uuid.UUID | None:
        """The agent id the token belongs to, or None if it is unknown or revoked."""
        agent_id = _agent_id_of(token)
        if agent_id is None or agent_id in self.unknown:
            return None
        token_hash = hash_token(token)
        cached = self._verified.get(agent_id)
        if cached is not None and time.monotonic() - cached[1] < self._cache_seconds:
            return _matching(agent_id, token_hash, cached[0])
        try:
            credential = await self._lookup(agent_id)
        except Unavailable:
            # The database is down, so no revocation can have been committed since the
            # credential was verified: keep serving the agent from memory.
            if cached is None:
                raise
            return _matching(agent_id, token_hash, cached[0])
        if credential is None or credential.revoked:
            self._verified.pop(agent_id, None)
            self.unknown.add(agent_id)
            return None
        now = time.monotonic()
        self._verified[agent_id] = (credential.token_hash, now)
        self._by_prefix[token.partition(".")[0]] = (
            agent_principal(agent_id),
            bytes.fromhex(credential.token_hash),
            now,
        )
        return _matching(agent_id, token_hash, credential.token_hash)

    def _lookup(self, agent_id: uuid.UUID) -> asyncio.Future[store.AgentCredential | None]:
        """The stored credential of ``agent_id``: read in a group with the ids asked about
        meanwhile (``CredentialLookups``), shared by concurrent askers."""
        return self._reads.read(agent_id)

    def remember(self, agent_id: uuid.UUID, token_hash: str) -> None:
        """Trust a credential this replica just issued (registration): the agent's first
        poll here needs no lookup. Issued tokens are ``<agent id>.<secret>``."""
        now = time.monotonic()
        self._verified[agent_id] = (token_hash, now)
        self._by_prefix[str(agent_id)] = (
            agent_principal(agent_id),
            bytes.fromhex(token_hash),
            now,
        )

    def forget(self, agent_id: uuid.UUID) -> None:
        """Stop trusting a cached credential at once (the agent was revoked here)."""
        self._verified.pop(agent_id, None)
        self.unknown.add(agent_id)
        self._by_prefix = {k: v for k, v in self._by_prefix.items() if v[0].agent_id != agent_id}
        for callback in self._on_forget:
            callback(agent_id)

    def forget_all(self) -> None:
        """Stop trusting every cached credential (an agent was revoked elsewhere)."""
        self._verified.clear()
        self._by_prefix.clear()
        for callback in self._on_forget:
            callback(None)


AddressOf = Callable[["web.Request"], str]
# How agents send their token; any other spelling takes the general path (common.auth).
_BEARER = "Bearer "
_BEARER_CHARS = len(_BEARER)
_MISSING_CREDENTIAL = "This endpoint needs 'Authorization: Bearer <token>'."


class Authenticator:
    def __init__(
        self,
        *,
        admin_token: SecretStr,
        registration_token: SecretStr,
        agent_tokens: AgentTokens,
        named: NamedCredentials,
        throttle: FailureThrottle,
        address_of: AddressOf,
    ) -> None:
        self._admin = admin_token
        self._registration = registration_token
        self._agent_tokens = agent_tokens
        self._named = named
        self._throttle = throttle
        self._address_of = address_of
        # Refused credentials (401): read by the metrics.
        self.failures = 0

    async def identify(self, token: str | None, request: web.Request) -> Principal:
        """The principal a Bearer token stands for; 401 when there is none or it is
        unknown, 429 when the caller failed too often lately (see ``FailureThrottle``)."""
        if token is not None:
            # A polling agent, recently verified: the common case, answered from memory.
            agent = self._agent_tokens.verify_cached(token)
            if agent is not None:
                return agent
            # Both static comparisons always run, so timing does not tell which matched.
            is_admin = tokens_equal(token, self._admin.get_secret_value())
            is_registration = tokens_equal(token, self._registration.get_secret_value())
            if is_admin:
                return _BOOTSTRAP_ADMIN
            if is_registration:
                return _REGISTRATION
            # A named credential: held in memory, looked up by its hash.
            named = self._named.identify(token)
            if named is not None:
                return Principal(role=Role(named.role), name=named.name)
        return await self._identify_agent(token, request)

    async def _identify_agent(self, token: str | None, request: web.Request) -> Principal:
        """Not answered from memory: throttled, then looked up."""
        client = self._address_of(request)
        self._throttle.check(client)
        if token is not None:
            agent_id = await self._agent_tokens.verify(token)
            if agent_id is not None:
                return agent_principal(agent_id)
        self._refused(client)
        if token is None:
            raise Unauthorized(_MISSING_CREDENTIAL)
        raise Unauthorized("The Bearer token is not valid, or was revoked.")

    def _refused(self, client: str) -> None:
        self.failures += 1
        self._throttle.record_failure(client)

    async def refuse(self, request: web.Request, refusal: Unauthorized) -> Principal:
        """Refuse an Authorization header that cannot be read: a failure like any other
        (429 instead when the caller failed too often lately)."""
        client = self._address_of(request)
        self._throttle.check(client)
        self._refused(client)
        raise refusal

    def known_agent(self, authorization: str, allowed: Collection[Role]) -> Principal | None:
        """An ``Authorization`` header's agent, when its token was verified recently and
        ``allowed`` includes agents: the poll's fast path, from memory and without a
        coroutine. None for anything else, which ``require`` then decides."""
        if not authorization.startswith(_BEARER) or Role.AGENT not in allowed:
            return None
        return self._agent_tokens.verify_cached(authorization[_BEARER_CHARS:])

    async def require(
        self, token: str | None, allowed: Collection[Role], request: web.Request
    ) -> Principal:
        principal = await self.identify(token, request)
        if principal.role not in allowed:
            names = " or ".join(sorted(role.value for role in allowed))
            raise Forbidden(
                f"This endpoint is for the {names} role; this token has the "
                f"{principal.role.value} role."
            )
        return principal
