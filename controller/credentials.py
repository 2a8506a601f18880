"""Who is calling: the admin, a machine that may register, or a registered agent.

Admin and registration tokens are static settings. Agent tokens are issued at
registration as ``<agent id>.<secret>``; only their SHA-256 is stored. Every comparison
is constant-time, and a verified agent credential is trusted for
``AGENT_TOKEN_CACHE_SECONDS`` so that polling does not query the database. A revocation
anywhere clears the cache of every replica (see ``ConfigCache``), so the long trust
costs no revocation delay.
"""

from __future__ import annotations

import enum
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from pydantic import SecretStr

from common.auth import hash_token, new_secret, tokens_equal
from common.errors import Forbidden, Unauthorized, Unavailable
from controller import store
from controller.constants import AGENT_TOKEN_CACHE_SECONDS
from controller.db import Database


class Role(enum.Enum):
    ADMIN = "admin"
    REGISTRATION = "registration"
    AGENT = "agent"

    @property
    def security_scheme(self) -> str:
        """The OpenAPI security scheme of this role's Bearer token."""
        return f"{self.value}Token"


# Who may call an operation, declared on it (Operation.roles); the documented
# security lists the roles in this order.
ADMIN = (Role.ADMIN,)
REGISTRARS = (Role.REGISTRATION, Role.ADMIN)
CONFIG_READERS = (Role.AGENT, Role.REGISTRATION, Role.ADMIN)

# The actor name of CONTROLLER_ADMIN_TOKEN in the history and the audit log.
ADMIN_NAME = "admin"


@dataclass(frozen=True, kw_only=True)
class Principal:
    role: Role
    agent_id: uuid.UUID | None = None
    # Who acts, as the history and the audit log name it: "admin" for the admin token.
    name: str | None = None


def issue_agent_token(agent_id: uuid.UUID) -> str:
    return f"{agent_id}.{new_secret()}"


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


class AgentTokens:
    """Verifies agent tokens against their stored hashes, with a short-lived cache."""

    def __init__(
        self, database: Database, *, cache_seconds: float = AGENT_TOKEN_CACHE_SECONDS
    ) -> None:
        self._database = database
        self._cache_seconds = cache_seconds
        self._verified: dict[uuid.UUID, tuple[str, float]] = {}
        # The verified agents again, keyed by the id as the token spells it: the hot path
        # of every poll finds them without parsing a UUID.
        self._by_prefix: dict[str, tuple[uuid.UUID, str, float]] = {}

    def verify_cached(self, token: str) -> uuid.UUID | None:
        """The agent id if the token matches a credential verified recently; else None."""
        prefix, _, _ = token.partition(".")
        entry = self._by_prefix.get(prefix)
        if entry is None or time.monotonic() - entry[2] >= self._cache_seconds:
            return None
        # Inline rather than _matching: this runs on every poll.
        return entry[0] if tokens_equal(hash_token(token), entry[1]) else None

    async def verify(self, token: str) -> uuid.UUID | None:
        """The agent id the token belongs to, or None if it is unknown or revoked."""
        agent_id = _agent_id_of(token)
        if agent_id is None:
            return None
        token_hash = hash_token(token)
        cached = self._verified.get(agent_id)
        if cached is not None and time.monotonic() - cached[1] < self._cache_seconds:
            return _matching(agent_id, token_hash, cached[0])
        try:
            credential = await self._database.transaction(
                lambda conn: store.read_agent_credential(conn, agent_id)
            )
        except Unavailable:
            # The database is down, so no revocation can have been committed since the
            # credential was verified: keep serving the agent from memory.
            if cached is None:
                raise
            return _matching(agent_id, token_hash, cached[0])
        if credential is None or credential.revoked:
            self._verified.pop(agent_id, None)
            return None
        now = time.monotonic()
        self._verified[agent_id] = (credential.token_hash, now)
        self._by_prefix[token.partition(".")[0]] = (agent_id, credential.token_hash, now)
        return _matching(agent_id, token_hash, credential.token_hash)

    def forget(self, agent_id: uuid.UUID) -> None:
        """Stop trusting a cached credential at once (the agent was revoked here)."""
        self._verified.pop(agent_id, None)
        self._by_prefix = {k: v for k, v in self._by_prefix.items() if v[0] != agent_id}

    def forget_all(self) -> None:
        """Stop trusting every cached credential (an agent was revoked elsewhere)."""
        self._verified.clear()
        self._by_prefix.clear()


class Authenticator:
    def __init__(
        self, *, admin_token: SecretStr, registration_token: SecretStr, agent_tokens: AgentTokens
    ) -> None:
        self._admin = admin_token
        self._registration = registration_token
        self._agent_tokens = agent_tokens

    async def identify(self, token: str | None) -> Principal:
        """The principal a Bearer token stands for; 401 when there is none or it is unknown."""
        if token is None:
            raise Unauthorized("This endpoint needs 'Authorization: Bearer <token>'.")
        # A polling agent, recently verified: the common case, answered from memory.
        agent_id = self._agent_tokens.verify_cached(token)
        if agent_id is not None:
            return Principal(role=Role.AGENT, agent_id=agent_id)
        # Both static comparisons always run, so timing does not tell which role matched.
        is_admin = tokens_equal(token, self._admin.get_secret_value())
        is_registration = tokens_equal(token, self._registration.get_secret_value())
        if is_admin:
            return Principal(role=Role.ADMIN, name=ADMIN_NAME)
        if is_registration:
            return Principal(role=Role.REGISTRATION)
        agent_id = await self._agent_tokens.verify(token)
        if agent_id is not None:
            return Principal(role=Role.AGENT, agent_id=agent_id)
        raise Unauthorized("The Bearer token is not valid, or was revoked.")

    async def require(self, token: str | None, allowed: Collection[Role]) -> Principal:
        principal = await self.identify(token)
        if principal.role not in allowed:
            names = " or ".join(sorted(role.value for role in allowed))
            raise Forbidden(
                f"This endpoint is for the {names} role; this token has the "
                f"{principal.role.value} role."
            )
        return principal
