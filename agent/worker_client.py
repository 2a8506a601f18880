"""Talking to the worker beside the agent: ``GET /config`` and ``POST /config``.

Failures are ``agent.errors``; a 409 (the worker holds a newer version) is VersionConflict,
a 412 (If-Match no longer names what it holds) is StaleTag.
"""

from __future__ import annotations

import uuid

from aiohttp import hdrs
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from yarl import URL

from agent.errors import ApplyRefused, BadAnswer, StaleTag, VersionConflict
from agent.http import exchange, parse_body, problem_detail, raise_for_shared_statuses
from agent.peer_http import Answer, PeerSession
from common.constants import HEADER_CONFIG_VERSION, HITS_PATH, MAX_CONFIG_VERSION
from common.models import WorkerConfig

# A configuration the worker refuses as invalid: malformed, too large, or not valid.
_REFUSED_STATUSES = frozenset({400, 413, 422})


class WorkerStatus(BaseModel):
    """What the worker says it holds; from :meth:`WorkerClient.status`, with the ETag
    naming it ("" if the worker sent none)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = Field(ge=0)
    config: WorkerConfig
    etag: str = Field(default="", exclude=True)


# Bounds on what the agent believes of GET /hits: the worker keeps 16 versions.
_MAX_HIT_VERSIONS = 64
_MAX_HIT_COUNT = 2**62


class VersionHitCounts(BaseModel):
    """One version's GET /hit counters, as the worker reports them."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = Field(ge=1, le=MAX_CONFIG_VERSION)
    ok: int = Field(ge=0, le=_MAX_HIT_COUNT)
    client_errors: int = Field(ge=0, le=_MAX_HIT_COUNT)
    server_errors: int = Field(ge=0, le=_MAX_HIT_COUNT)
    upstream_errors: int = Field(ge=0, le=_MAX_HIT_COUNT)
    timeouts: int = Field(ge=0, le=_MAX_HIT_COUNT)

    @property
    def requests(self) -> int:
        """Every outcome."""
        return (
            self.ok + self.client_errors + self.server_errors + self.upstream_errors + self.timeouts
        )

    @property
    def errors(self) -> int:
        """The outcomes that count against a version's health: no answer or a 5xx."""
        return self.server_errors + self.upstream_errors + self.timeouts


class WorkerHits(BaseModel):
    """``GET /hits``: the worker's counters since it started (``boot_id``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    boot_id: uuid.UUID
    versions: list[VersionHitCounts] = Field(max_length=_MAX_HIT_VERSIONS)


class WorkerClient:
    """The worker at ``base_url``, over one session this client owns."""

    def __init__(self, session: PeerSession, base_url: str, *, token: SecretStr | None) -> None:
        self._session = session
        self._url = URL(base_url.rstrip("/") + "/config")
        self._hits_url = URL(base_url.rstrip("/") + HITS_PATH)
        self._token = token

    async def close(self) -> None:
        await self._session.close()

    async def status(self) -> WorkerStatus:
        """The version and configuration the worker holds, with its ETag."""
        answer = await exchange(self._session, "GET", self._url, headers=self._auth())
        status = _status_of(answer)
        return status.model_copy(update={"etag": answer.headers.get(hdrs.ETAG, "")})

    async def hits(self) -> WorkerHits:
        """The worker's GET /hit counters per version."""
        answer = await exchange(self._session, "GET", self._hits_url, headers=self._auth())
        raise_for_shared_statuses(answer)
        if answer.status != 200:
            raise BadAnswer(f"GET /hits answered {answer.status}: {problem_detail(answer)}")
        return parse_body(answer, WorkerHits)

    async def apply(
        self, version: int, config: WorkerConfig, *, if_match: str | None = None
    ) -> WorkerStatus:
        """Hand the worker ``config`` as ``version``; what it then holds.

        With ``if_match`` (an ETag from :meth:`status`) the worker replaces what it holds,
        whatever its version, if that is still what the ETag names; StaleTag if not.
        """
        headers = {**self._auth(), HEADER_CONFIG_VERSION: str(version)}
        if if_match is not None:
            headers[hdrs.IF_MATCH] = if_match
        answer = await exchange(self._session, "POST", self._url, headers=headers, body=config)
        if answer.status == 409:
            raise VersionConflict(f"the worker refused version {version}")
        if answer.status == 412:
            raise StaleTag(f"the worker no longer holds {if_match}")
        if answer.status in _REFUSED_STATUSES:
            raise ApplyRefused(
                f"the worker refused version {version} ({answer.status}): {problem_detail(answer)}"
            )
        return _status_of(answer)

    def _auth(self) -> dict[str, str]:
        if self._token is None:
            return {}
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}


def _status_of(answer: Answer) -> WorkerStatus:
    raise_for_shared_statuses(answer)
    if answer.status != 200:
        raise BadAnswer(f"the worker answered {answer.status}: {problem_detail(answer)}")
    return parse_body(answer, WorkerStatus)
