"""The agent's hit report: deltas of the worker's GET /hit counters, restart detection,
the X-Hit-Counts header, cleared only once the controller answered, and the report
interval's timer; against the real worker and controller on loopback."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from agent.hit_report import HitNote, HitReport
from agent.metrics import AgentMetrics
from agent.runner import Agent
from agent.worker_client import VersionHitCounts, WorkerClient, WorkerHits
from common.constants import (
    HEADER_APPLIED_VERSION,
    HEADER_HIT_COUNTS,
    MAX_HIT_COUNT_ENTRIES,
    MAX_HITS_PER_REPORT,
)
from controller import keys
from tests.agent.conftest import (
    Controller,
    MakeSettings,
    StartController,
    base_url,
    eventually,
)

BOOT = uuid.uuid4()


def _hits(boot: uuid.UUID, *versions: tuple[int, int, int]) -> WorkerHits:
    """(version, ok, server_errors) per version."""
    return WorkerHits(
        boot_id=boot,
        versions=[
            VersionHitCounts(
                version=v,
                ok=ok,
                client_errors=0,
                server_errors=errors,
                upstream_errors=0,
                timeouts=0,
            )
            for v, ok, errors in versions
        ],
    )


def _report() -> HitReport:
    return HitReport(AgentMetrics())


def test_deltas_since_the_previous_read_are_reported() -> None:
    """Only what the counters gained since the last read is added; nothing new, no note."""
    report = _report()
    assert report.next_note() is None
    assert report._take(_hits(BOOT, (3, 10, 1)))
    report.told(report.next_note())
    assert report._take(_hits(BOOT, (4, 2, 0), (3, 15, 3)))
    assert report.unreported == {4: (2, 0), 3: (7, 2)}
    assert not report._take(_hits(BOOT, (4, 2, 0), (3, 15, 3)))


def test_a_new_boot_id_or_a_counter_going_down_is_a_restart() -> None:
    """After a restart, the new counters are the delta whole."""
    report = _report()
    report._take(_hits(BOOT, (3, 10, 1)))
    report.told(report.next_note())
    report._take(_hits(uuid.uuid4(), (3, 12, 0)))
    assert report.unreported == {3: (12, 0)}
    report.told(report.next_note())
    boot = uuid.uuid4()
    report._take(_hits(boot, (3, 5, 0)))
    report.told(report.next_note())
    report._take(_hits(boot, (3, 1, 0)))
    assert report.unreported == {3: (1, 0)}


def test_the_header_names_newest_versions_first_at_most_eight() -> None:
    """X-Hit-Counts: version:requests:errors, newest first, no more than eight entries."""
    report = _report()
    report._take(_hits(BOOT, *[(v, v, 1) for v in range(1, 11)]))
    note = report.next_note()
    assert note is not None
    assert len(note.entries) == MAX_HIT_COUNT_ENTRIES
    assert note.header == ",".join(f"{v}:{v + 1}:1" for v in range(10, 2, -1))


def test_counts_above_the_per_report_bound_are_spread_over_reports() -> None:
    """A version with more than MAX_HITS_PER_REPORT requests is reported in parts, errors
    never above requests in any part."""
    report = _report()
    report._take(_hits(BOOT, (2, MAX_HITS_PER_REPORT, 500)))
    first = report.next_note()
    assert first is not None
    assert first.entries == ((2, MAX_HITS_PER_REPORT, 500),)
    report.told(first)
    assert report.unreported == {2: (500, 0)}
    second = report.next_note()
    assert second is not None
    assert second.entries == ((2, 500, 0),)


def test_told_forgets_only_what_was_reported() -> None:
    """Counts read while a request was in flight stay for the next request."""
    report = _report()
    report._take(_hits(BOOT, (3, 10, 1)))
    note = report.next_note()
    report._take(_hits(BOOT, (3, 14, 1)))
    report.told(note)
    assert report.unreported == {3: (4, 0)}
    assert HitNote(entries=((3, 4, 0),)).header == "3:4:0"


async def test_an_unreachable_or_nonsense_worker_is_counted_not_fatal(
    aiohttp_server: AiohttpServer, closed_port_url: str
) -> None:
    """A worker that is down, or answers a body that is not its counters, makes read()
    return False and counts a failed read; nothing is raised."""

    async def nonsense(request: web.Request) -> web.Response:
        return web.json_response({"boot_id": "not-a-uuid", "versions": [{"version": -1}]})

    app = web.Application()
    app.router.add_get("/hits", nonsense)
    server = await aiohttp_server(app)
    metrics = AgentMetrics()
    for url in (closed_port_url, base_url(server)):
        report = HitReport(metrics)
        async with aiohttp.ClientSession() as session:
            report.connect(WorkerClient(session, url, token=None))
            assert await report.read() is False
    assert metrics.hit_reads == {"ok": 0, "failed": 2}


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> TestServer:
    """A loopback upstream whose /mixed answers 500 to every third request, else 200."""
    counter = itertools.count(1)

    async def mixed(request: web.Request) -> web.Response:
        return web.Response(status=500 if next(counter) % 3 == 0 else 200, text="x")

    app = web.Application()
    app.router.add_get("/mixed", mixed)
    return await aiohttp_server(app)


async def _hit_worker(worker: TestServer, times: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(times):
            async with session.get(worker.make_url("/hit")) as resp:
                assert resp.status in (200, 500)


def _reports(controller: Controller) -> list[str]:
    return [
        s.headers[HEADER_HIT_COUNTS] for s in controller.polls() if HEADER_HIT_COUNTS in s.headers
    ]


async def test_a_regular_poll_reports_the_workers_hits(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    upstream: TestServer,
) -> None:
    """With a 1 s poll interval, hits at the worker are reported by the next regular poll
    (6 requests, 2 of them 500) and reach the controller's totals."""
    controller = await start_controller(poll_interval_seconds=1)
    version = await controller.publish(str(upstream.make_url("/mixed")))
    agent = Agent(make_settings(controller_url=controller.url, worker_url=base_url(worker)))
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: agent.applied_version == version)
        await _hit_worker(worker, 6)
        await eventually(lambda: f"{version}:6:2" in _reports(controller), timeout_seconds=5)
        assert agent.controller_sync.hit_report.unreported == {}
    finally:
        await agent.stop()
        await task
    rollout = await controller.rollout(version)
    assert rollout["health"] == {"requests": 6, "errors": 2, "error_rate": 2 / 6}


async def test_reports_survive_a_stopped_controller(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    upstream: TestServer,
) -> None:
    """A poll that fails because the controller is stopped keeps the counts; the first poll
    the restarted controller answers carries them, then they are cleared."""
    controller = await start_controller()
    version = await controller.publish(str(upstream.make_url("/mixed")))
    async with Agent(
        make_settings(controller_url=controller.url, worker_url=base_url(worker))
    ) as agent:
        await agent.sync_controller_once()
        await agent.sync_controller_once()
        await agent.reconcile_worker_once()
        assert agent.applied_version == version
        await _hit_worker(worker, 3)
        report = agent.controller_sync.hit_report
        assert await report.read()
        port = controller.server.port
        await controller.server.close()
        step = await agent.sync_controller_once()
        assert step.outcome.value == "unreachable"
        assert report.unreported == {version: (3, 1)}
        again = await start_controller(port=port)
        await agent.sync_controller_once()
        assert _reports(again) == [f"{version}:3:1"]
        assert report.unreported == {}
        await agent.sync_controller_once()
        assert _reports(again) == [f"{version}:3:1"]
    assert (await again.rollout(version))["health"]["requests"] == 3


async def test_the_report_interval_timer_sends_a_report(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    upstream: TestServer,
) -> None:
    """With a 30 s poll interval and a 1 s report interval, new hits reach the controller
    within a few seconds, by a poll of the timer's own."""
    controller = await start_controller(poll_interval_seconds=30)
    assert controller.server.app is not None
    controller.server.app[keys.CACHE].set_report_interval(1)
    version = await controller.publish(str(upstream.make_url("/mixed")))
    agent = Agent(make_settings(controller_url=controller.url, worker_url=base_url(worker)))
    task = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: agent.applied_version == version)
        await eventually(lambda: agent.controller_sync.hit_report.interval_seconds == 1)
        confirmed = str(version)
        polls = controller.polls
        await eventually(
            lambda: any(p.headers.get(HEADER_APPLIED_VERSION) == confirmed for p in polls())
        )
        polls_before = len(controller.polls())
        await _hit_worker(worker, 3)
        await eventually(lambda: f"{version}:3:1" in _reports(controller), timeout_seconds=5)
        assert len(controller.polls()) == polls_before + 1
    finally:
        await agent.stop()
        await task
