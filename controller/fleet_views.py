"""HTTP handlers for fleet status: the agents, one agent, revoking one, the summary."""

from __future__ import annotations

import logging
import uuid

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from common.auth import bearer_token
from common.errors import FleetconfError, NotFound
from common.http import json_response, read_query
from controller import keys, store
from controller.db import in_transaction, utcnow
from controller.fleet import (
    FleetCounts,
    StateRule,
    VersionGroup,
    agent_state,
    state_rule,
    summarize,
)
from controller.models import (
    Agent,
    AgentListQuery,
    AgentPage,
    AppliedVersionCount,
    FleetSummary,
)
from controller.views import ADMIN, announce

logger = logging.getLogger(__name__)


async def _authorize(request: web.Request) -> None:
    await request.app[keys.AUTHENTICATOR].require(bearer_token(request), ADMIN)


def _agent_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["agent_id"])
    except ValueError as exc:
        raise NotFound("No agent has this id; agent ids are UUIDs.") from exc


async def _flush_ledger(app: web.Application) -> None:
    """Write this replica's pending polls first, so the admin sees the latest ones."""
    try:
        await app[keys.LEDGER].flush()
    except FleetconfError:
        logger.warning("fleet.ledger_flush_failed pending=%d", app[keys.LEDGER].pending)


async def _rule(conn: AsyncConnection, app: web.Application) -> StateRule:
    fleet = await store.read_fleet_state(conn)
    interval = fleet.poll_interval_seconds or app[keys.SETTINGS].poll_interval_seconds
    return state_rule(
        current_version=fleet.current_version, poll_interval_seconds=interval, now=utcnow()
    )


def _agent(record: store.AgentRecord, rule: StateRule) -> Agent:
    state = agent_state(
        rule, last_contact=record.last_contact, applied_version=record.applied_version
    )
    return Agent(
        id=record.id,
        hostname=record.hostname,
        labels=record.labels,
        registered_at=record.registered_at,
        last_seen_at=record.last_seen_at,
        applied_version=record.applied_version,
        state=state,
    )


async def list_agents(request: web.Request) -> web.Response:
    await _authorize(request)
    query = read_query(request, AgentListQuery)
    await _flush_ledger(request.app)

    async def read(conn: AsyncConnection) -> tuple[StateRule, store.AgentPage]:
        rule = await _rule(conn, request.app)
        page = await store.read_agent_page(
            conn, limit=query.limit, offset=query.offset, rule=rule, state=query.state
        )
        return rule, page

    rule, page = await in_transaction(request.app[keys.ENGINE], read)
    items = [_agent(record, rule) for record in page.items]
    return json_response(
        AgentPage(items=items, total=page.total, limit=query.limit, offset=query.offset)
    )


async def get_agent(request: web.Request) -> web.Response:
    await _authorize(request)
    agent_id = _agent_id(request)
    await _flush_ledger(request.app)

    async def read(conn: AsyncConnection) -> tuple[StateRule, store.AgentRecord | None]:
        return await _rule(conn, request.app), await store.read_agent(conn, agent_id)

    rule, record = await in_transaction(request.app[keys.ENGINE], read)
    if record is None:
        raise NotFound(f"No agent {agent_id} is registered (or it was revoked).")
    return json_response(_agent(record, rule))


async def delete_agent(request: web.Request) -> web.Response:
    await _authorize(request)
    agent_id = _agent_id(request)
    revoked = await in_transaction(
        request.app[keys.ENGINE], lambda conn: store.revoke_agent(conn, agent_id)
    )
    if not revoked:
        raise NotFound(f"No agent {agent_id} is registered (or it was revoked already).")
    request.app[keys.AGENT_TOKENS].forget(agent_id)
    logger.info("agent.revoked agent_id=%s", agent_id)
    # Other replicas see the revocation counter move at their next refresh: at once on
    # this hint, within CACHE_REFRESH_SECONDS without Redis.
    await announce(request.app)
    return web.Response(status=204)


async def read_fleet(app: web.Application) -> tuple[StateRule, FleetCounts]:
    """The fleet's convergence, this replica's pending polls included: one GROUP BY."""
    await _flush_ledger(app)

    async def read(conn: AsyncConnection) -> tuple[StateRule, list[VersionGroup]]:
        rule = await _rule(conn, app)
        return rule, await store.count_agents_by_applied_version(conn, rule)

    rule, groups = await in_transaction(app[keys.ENGINE], read)
    return rule, summarize(groups, current_version=rule.current_version)


async def fleet_summary(request: web.Request) -> web.Response:
    await _authorize(request)
    rule, counts = await read_fleet(request.app)
    by_version = [
        AppliedVersionCount(applied_version=g.applied_version, agents=g.agents)
        for g in counts.by_applied_version
    ]
    summary = FleetSummary(
        current_version=rule.current_version,
        poll_interval_seconds=rule.poll_interval_seconds,
        agents=counts.agents,
        in_sync=counts.in_sync,
        behind=counts.behind,
        stale=counts.stale,
        converged_fraction=counts.converged_fraction,
        by_applied_version=by_version,
    )
    return json_response(summary)
