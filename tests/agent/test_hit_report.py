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

from agent.constants import HIT_READ_TIMEOUT_SECONDS
from agent.controller_sync import poll_wait_seconds
from agent.hit_report import HitNote, HitReport
from agent.metrics import AgentMetrics
from agent.peer_http import PeerSession
from agent.runner import Agent
from agent.worker_client import VersionHitCounts, WorkerClient, WorkerHits
from common.constants import (
    HEADER_APPLIED_VERSION,
    HEADER_HIT_COUNTS,
    MAX_HIT_COUNT_ENTRIES,
    MAX_HITS_PER_REPORT,
)
from common.hints import Hint
from controller import keys
from tests.agent.conftest import (
    Controller,
    MakeSettings,
    StartController,
    StartWorker,
    base_url,
    eventually,
    running_agent,
    worker_version,
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
    """A report that has read its baseline: the worker BOOT, nothing counted yet."""
    report = HitReport(AgentMetrics())
    assert not report._take(_hits(BOOT))
    return report


def test_the_first_counters_read_are_the_baseline() -> None:
    """What a worker counted before the agent's first read is not reported (an agent
    that restarted reported it already); what it counts after is."""
    report = HitReport(AgentMetrics())
    assert not report._take(_hits(BOOT, (3, 500, 20)))
    assert report.next_note() is None
    assert report._take(_hits(BOOT, (3, 504, 21)))
    assert report.unreported == {3: (5, 1)}


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
        session = PeerSession(timeout_seconds=5)
        report.connect(WorkerClient(session, url, token=None))
        assert await report.read() is False
        await session.close()
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
    async with running_agent(agent):
        await eventually(lambda: agent.applied_version == version)
        await _hit_worker(worker, 6)
        await eventually(lambda: f"{version}:6:2" in _reports(controller), timeout_seconds=5)
        # Cleared once the agent has the controller's answer (just after the controller
        # recorded the request).
        await eventually(lambda: agent.controller_sync.hit_report.unreported == {})
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
        report = agent.controller_sync.hit_report
        assert not await report.read()  # the baseline
        await _hit_worker(worker, 3)
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
    """Without long polls, with a 30 s poll interval and a 1 s report interval, new hits
    reach the controller within a few seconds, by a poll of the timer's own."""
    controller = await start_controller(poll_interval_seconds=30)
    assert controller.server.app is not None
    controller.server.app[keys.CACHE].set_report_interval(1)
    version = await controller.publish(str(upstream.make_url("/mixed")))
    settings = make_settings(
        controller_url=controller.url, worker_url=base_url(worker), long_poll=False
    )
    agent = Agent(settings)
    async with running_agent(agent):
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


async def test_held_polls_carry_hits_once(
    make_settings: MakeSettings,
    start_controller: StartController,
    worker: TestServer,
    upstream: TestServer,
) -> None:
    """With long polls and a 2 s interval, new hits ride on the next held poll, read
    before it: they reach the controller within a few seconds, and only once."""
    controller = await start_controller(poll_interval_seconds=2)
    version = await controller.publish(str(upstream.make_url("/mixed")))
    agent = Agent(make_settings(controller_url=controller.url, worker_url=base_url(worker)))
    async with running_agent(agent):
        await eventually(lambda: agent.applied_version == version)
        await _hit_worker(worker, 3)
        await eventually(lambda: f"{version}:3:1" in _reports(controller), timeout_seconds=6)
        assert all(p.headers.get("Prefer") == "wait=2" for p in controller.polls()[1:])
        await asyncio.sleep(2.5)
        assert _reports(controller).count(f"{version}:3:1") == 1


def test_a_held_poll_waits_no_longer_than_the_report_interval() -> None:
    """While the controller wants /hit reports more often than polls (a staged rollout),
    a held poll asks to wait the report interval, so reports ride on held polls."""
    assert poll_wait_seconds(True, 30, None) == 30
    assert poll_wait_seconds(True, 30, 5) == 5
    assert poll_wait_seconds(True, 3, 5) == 3
    assert poll_wait_seconds(False, 30, 5) is None


@pytest.fixture
async def hanging_hits(aiohttp_server: AiohttpServer, worker: TestServer) -> TestServer:
    """A stand-in for the worker on loopback: /config is passed to the real worker, GET /hits
    never answers (counted in the app's "hits_started")."""
    started: list[float] = []

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                worker.make_url("/config"),
                headers=headers,
                data=await request.read(),
            ) as answer,
        ):
            body = await answer.read()
            kept = {
                k: v for k, v in answer.headers.items() if k.lower() in ("etag", "content-type")
            }
            return web.Response(status=answer.status, body=body, headers=kept)

    async def hits(request: web.Request) -> web.Response:
        started.append(asyncio.get_running_loop().time())
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app[HITS_STARTED] = started
    app.router.add_route("*", "/config", forward)
    app.router.add_get("/hits", hits)
    return await aiohttp_server(app)


HITS_STARTED = web.AppKey("hits_started", list[float])


async def test_a_hanging_worker_delays_no_hinted_fetch_nor_confirmation(
    make_settings: MakeSettings,
    start_controller: StartController,
    hanging_hits: TestServer,
    upstream: TestServer,
) -> None:
    """With GET /hits never answering, a hint's fetch and the confirmation of the apply it
    brings go out at once (30 s poll interval); neither starts a read of the worker."""
    controller = await start_controller(poll_interval_seconds=30)
    first = await controller.publish(str(upstream.make_url("/mixed")))
    settings = make_settings(controller_url=controller.url, worker_url=base_url(hanging_hits))
    agent = Agent(settings)
    async with running_agent(agent):
        await eventually(lambda: agent.applied_version == first)
        assert hanging_hits.app is not None
        reads_before = len(hanging_hits.app[HITS_STARTED])  # the start's baseline read
        second = await controller.publish(str(upstream.make_url("/mixed")) + "?two")
        agent.hint_schedule.on_hint(Hint(version=second, poll_interval_seconds=30))
        confirmed = str(second)
        polls = controller.polls
        await eventually(
            lambda: any(p.headers.get(HEADER_APPLIED_VERSION) == confirmed for p in polls()),
            timeout_seconds=2.0,
        )
        assert len(hanging_hits.app[HITS_STARTED]) == reads_before


async def test_a_hanging_worker_costs_a_regular_poll_the_read_bound_only(
    make_settings: MakeSettings, start_controller: StartController, hanging_hits: TestServer
) -> None:
    """A read of a GET /hits that never answers gives up after HIT_READ_TIMEOUT_SECONDS;
    with a 1 s poll interval regular polls keep going out, and the failed reads are
    counted."""
    controller = await start_controller(poll_interval_seconds=1)
    settings = make_settings(controller_url=controller.url, worker_url=base_url(hanging_hits))
    async with Agent(settings) as agent:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await agent.controller_sync.hit_report.read() is False
        took = loop.time() - started
        # At least the bound; the margin is for a machine twice as slow as this one.
        assert HIT_READ_TIMEOUT_SECONDS <= took < 2 * HIT_READ_TIMEOUT_SECONDS + 1
    agent = Agent(settings)
    async with running_agent(agent):
        await eventually(lambda: agent.metrics.hit_reads["failed"] >= 2, timeout_seconds=15)
        assert len(controller.polls()) >= 2
    assert agent.metrics.hit_reads["ok"] == 0


async def test_a_restarted_worker_is_counted_from_its_new_counters(
    make_settings: MakeSettings,
    start_controller: StartController,
    start_worker: StartWorker,
    upstream: TestServer,
) -> None:
    """The real worker restarted (a new process on the same port, new boot_id, counters
    from zero): what it counted since is reported whole, nothing subtracted."""
    worker = await start_worker()
    controller = await start_controller()
    version = await controller.publish(str(upstream.make_url("/mixed")))
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    async with Agent(settings) as agent:
        await agent.sync_controller_once()
        await agent.sync_controller_once()
        await agent.reconcile_worker_once()
        report = agent.controller_sync.hit_report
        assert not await report.read()  # the baseline
        await _hit_worker(worker, 6)
        assert await report.read()
        await agent.sync_controller_once()
        assert report.unreported == {}
        port = worker.port
        await worker.close()
        worker = await start_worker(port=port)
        await agent.reconcile_worker_once()
        await _hit_worker(worker, 2)
        assert await report.read()
        assert report.unreported == {version: (2, 0)}


async def test_a_worker_found_restarted_gets_its_configuration_at_once(
    make_settings: MakeSettings,
    start_controller: StartController,
    start_worker: StartWorker,
    upstream: TestServer,
) -> None:
    """The worker restarted empty on its port: the hit read that finds the new boot_id
    wakes the reconciler, which hands the version back at once, not at its next regular
    check one poll interval (30 s here) later."""
    worker = await start_worker()
    controller = await start_controller(poll_interval_seconds=30)
    version = await controller.publish(str(upstream.make_url("/mixed")))
    settings = make_settings(controller_url=controller.url, worker_url=base_url(worker))
    async with running_agent(Agent(settings)) as agent:
        await eventually(lambda: agent.applied_version == version, timeout_seconds=5.0)
        report = agent.controller_sync.hit_report
        await report.read()  # the baseline (or nothing new)
        port = worker.port
        await worker.close()
        worker = await start_worker(port=port)
        assert await worker_version(worker) == 0
        await report.read()

        async def restored() -> bool:
            return await worker_version(worker) == version

        await eventually(restored, timeout_seconds=2.0)
