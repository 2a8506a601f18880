"""The fleet as the admin API and the metrics read it: agents judged by one state rule,
after this replica's pending polls are written (by the ledger's loop, not by the read).
Nothing here knows about HTTP."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from common.errors import FleetconfError
from common.models import AgentState
from controller import agent_queries, rollout_store, staged_store, store
from controller.db import Database, utcnow
from controller.fleet import FleetCounts, StateRule, VersionGroup, state_rule, summarize
from controller.hit_totals import HitTotals, read_hit_totals
from controller.ledger import Ledger

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RolloutRead:
    """One version's rollout: its counts, one page of its laggards, and its /hit health."""

    version: int
    counts: rollout_store.RolloutCounts
    laggards: rollout_store.LaggardPage
    health: HitTotals


class FleetQueries:
    def __init__(
        self, database: Database, ledger: Ledger, *, default_poll_interval_seconds: int
    ) -> None:
        self._database = database
        self._ledger = ledger
        self._default_poll_interval_seconds = default_poll_interval_seconds

    async def _ledger_caught_up(self) -> None:
        """Wait until this replica's pending polls are written (by the ledger's loop), so
        the admin sees the latest ones."""
        try:
            await self._ledger.caught_up()
        except FleetconfError:
            logger.warning("fleet.ledger_flush_failed pending=%d", self._ledger.pending)

    async def _rule(self, conn: AsyncConnection) -> StateRule:
        """The state rule now: with a staged rollout running or paused, its cohort's
        members are judged against its candidate."""
        return (await self._rule_and_fleet(conn))[0]

    async def _rule_and_fleet(self, conn: AsyncConnection) -> tuple[StateRule, store.FleetRow]:
        """The state rule and the fleet row it was made from (one read of the row)."""
        fleet = await store.read_fleet_row(conn)
        interval = fleet.poll_interval_seconds or self._default_poll_interval_seconds
        rollout = None
        if fleet.active_rollout is not None:
            rollout = await staged_store.read_rollout(conn, fleet.active_rollout)
        rule = state_rule(
            current_version=fleet.current_version,
            poll_interval_seconds=interval,
            now=utcnow(),
            rollout_id=None if rollout is None else rollout.id,
            candidate_version=None if rollout is None else rollout.candidate_version,
        )
        return rule, fleet

    async def read_agent_page(
        self,
        *,
        limit: int,
        offset: int,
        state: AgentState | None,
        label: tuple[str, str] | None = None,
    ) -> tuple[StateRule, agent_queries.AgentPage]:
        """One page of unrevoked agents (in ``state`` only, with the ``label`` (key, value)
        only, if given), and the rule that judges them."""
        await self._ledger_caught_up()

        async def read(conn: AsyncConnection) -> tuple[StateRule, agent_queries.AgentPage]:
            rule = await self._rule(conn)
            page = await agent_queries.read_agent_page(
                conn, limit=limit, offset=offset, rule=rule, state=state, label=label
            )
            return rule, page

        return await self._database.transaction(read)

    async def read_agent(
        self, agent_id: uuid.UUID
    ) -> tuple[StateRule, agent_queries.AgentRecord | None]:
        """One unrevoked agent (None if there is none), and the rule that judges it."""
        await self._ledger_caught_up()

        async def read(conn: AsyncConnection) -> tuple[StateRule, agent_queries.AgentRecord | None]:
            rule = await self._rule(conn)
            return rule, await agent_queries.read_agent(conn, agent_id, rule)

        return await self._database.transaction(read)

    async def read_fleet(self) -> tuple[StateRule, FleetCounts]:
        """The fleet's convergence: one GROUP BY, after this replica's pending polls."""
        await self._ledger_caught_up()
        return await self.count_fleet()

    async def count_fleet(self) -> tuple[StateRule, FleetCounts]:
        """The fleet's convergence as the database has it: one GROUP BY, no flush."""

        async def read(conn: AsyncConnection) -> tuple[StateRule, list[VersionGroup], int]:
            rule, fleet = await self._rule_and_fleet(conn)
            groups = await agent_queries.count_agents_by_applied_version(conn, rule)
            return rule, groups, fleet.highest_reported_version

        rule, groups, highest = await self._database.transaction(read)
        counts = summarize(
            groups,
            current_version=rule.current_version,
            highest_reported_version=highest,
            candidate_version=rule.candidate_version,
        )
        return rule, counts

    async def read_rollout(self, version: int, *, limit: int, offset: int) -> RolloutRead | None:
        """``version``'s rollout after this replica's pending polls (and hit counts); None if
        no such version."""
        await self._ledger_caught_up()

        async def read(conn: AsyncConnection) -> RolloutRead | None:
            record = await store.read_version(conn, version)
            if record is None:
                return None
            rule = await self._rule(conn)
            counts = await rollout_store.read_counts(conn, rule, version, record.created_at)
            laggards = await rollout_store.read_laggards(
                conn, rule, version, limit=limit, offset=offset
            )
            health = (await read_hit_totals(conn, (version,)))[version]
            return RolloutRead(version=version, counts=counts, laggards=laggards, health=health)

        return await self._database.transaction(read)
