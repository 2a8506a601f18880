"""Registrations written on a thread of their own: the batcher's loop runs there, the
handlers' loop queues and answers; a registration whose transaction committed before its
wait ran out is answered with its agent, not 503."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import text

from common.errors import Conflict, TooManyRequests, Unavailable
from controller.registration import Outcome, Registration, RegistrationRequest
from controller.registration_batch import RegistrationBatcher, _Waiting
from controller.registration_writer import WriterThread


def _request(name: str) -> RegistrationRequest:
    return RegistrationRequest(hostname=name, labels={}, assigned_version=1)


def _registration() -> Registration:
    return Registration(agent_id=uuid.uuid4(), agent_token="t", token_hash="h")


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[WriterThread]:
    thread = WriterThread(
        f"sqlite+aiosqlite:///{tmp_path}/writer.db", event_loop="asyncio", name="test-writer"
    )
    thread.start()
    try:
        yield thread
    finally:
        await thread.stop(2.0)


async def test_the_thread_runs_its_database_on_its_own_loop(writer: WriterThread) -> None:
    """A transaction run through the thread runs on another thread and loop; stop() ends
    the thread."""

    async def on_the_thread() -> tuple[int, int]:
        value = await writer.database.transaction(
            lambda conn: _scalar(conn, "SELECT 41 + 1"), timeout_seconds=5.0
        )
        return threading.get_ident(), value

    ident, value = await writer.run(on_the_thread())
    assert value == 42
    assert ident != threading.get_ident()
    assert writer.loop is not asyncio.get_running_loop()


async def _scalar(conn: object, sql: str) -> int:
    result = await conn.execute(text(sql))  # type: ignore[attr-defined]
    return int(result.scalar_one())


async def test_groups_are_written_on_the_thread_and_answered_here(writer: WriterThread) -> None:
    """Concurrent registrations are written in one group on the writer's thread; each
    handler gets its own agent, and the counts and pace are kept here."""
    written_on: list[int] = []

    async def write_group(requests: Sequence[RegistrationRequest]) -> list[Outcome]:
        written_on.append(threading.get_ident())
        return [_registration() for _ in requests]

    remembered: list[Registration] = []
    batcher = RegistrationBatcher(
        write_group=write_group, limit=100, on_written=remembered.append, runner_loop=writer.loop
    )
    runner = asyncio.create_task(writer.run(batcher.run()))
    try:
        answers = await asyncio.gather(*(batcher.register(_request(f"h{i}")) for i in range(20)))
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert len({answer.agent_id for answer in answers}) == 20
    assert set(written_on) == {writer.thread_ident}
    assert threading.get_ident() not in written_on
    assert batcher.counts.agents == 20
    assert batcher.unanswered == 0
    assert {r.agent_id for r in remembered} == {a.agent_id for a in answers}


async def test_a_group_that_fails_answers_each_503(writer: WriterThread) -> None:
    async def write_group(requests: Sequence[RegistrationRequest]) -> list[Outcome]:
        raise Unavailable("The database did not answer in time; retry shortly.")

    batcher = RegistrationBatcher(write_group=write_group, limit=100, runner_loop=writer.loop)
    runner = asyncio.create_task(writer.run(batcher.run()))
    try:
        results = await asyncio.gather(
            *(batcher.register(_request(f"h{i}")) for i in range(5)), return_exceptions=True
        )
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert all(isinstance(result, Unavailable) for result in results)


async def test_a_registration_written_in_time_is_answered_even_if_its_answer_is_late() -> None:
    """The wait ran out while the committed outcome was on its way: the agent is
    answered with it (the future then holds it, so the late delivery counts nothing)."""
    loop = asyncio.get_running_loop()
    registration = _registration()
    waiting = _Waiting(_request("late"), loop.create_future(), queued_at=0.0)
    waiting.outcome = registration
    assert RegistrationBatcher._written_meanwhile(waiting) is registration
    assert waiting.answer.result() is registration


async def test_a_registration_not_written_in_time_is_not_answered_with_an_agent() -> None:
    loop = asyncio.get_running_loop()
    waiting = _Waiting(_request("none"), loop.create_future(), queued_at=0.0)
    assert RegistrationBatcher._written_meanwhile(waiting) is None
    waiting.outcome = Unavailable("The registration failed; retry shortly.")
    assert RegistrationBatcher._written_meanwhile(waiting) is None
    assert not waiting.answer.done()


async def test_written_answers_on_their_way_count_neither_against_the_limit_nor_late(
    writer: WriterThread,
) -> None:
    """While the handlers' loop is too busy to take the answers (blocked here), the
    registrations the thread wrote no longer count against the queue's limit, and the
    pace has counted them as written: a busy loop is no reason to refuse, a slow
    database is."""
    release = threading.Event()

    async def write_group(requests: Sequence[RegistrationRequest]) -> list[Outcome]:
        await asyncio.get_running_loop().run_in_executor(None, release.wait, 5.0)
        return [_registration() for _ in requests]

    batcher = RegistrationBatcher(
        write_group=write_group, limit=3, runner_loop=writer.loop, window_seconds=0.05
    )
    runner = asyncio.create_task(writer.run(batcher.run()))
    try:
        handlers = [asyncio.create_task(batcher.register(_request(f"h{i}"))) for i in range(3)]
        await _until(lambda: batcher.unanswered == 3 and batcher.counts.groups == 0)
        # Full (3 being written): a fourth is refused.
        with pytest.raises(TooManyRequests):
            await batcher.register(_request("refused"))
        release.set()
        # This loop blocks: the answers wait for it, the limit does not.
        deadline = time.monotonic() + 5.0
        while batcher.unanswered and time.monotonic() < deadline:
            time.sleep(0.01)  # noqa: ASYNC251 (blocks this loop on purpose)
        assert batcher.unanswered == 0
        assert not any(handler.done() for handler in handlers)
        assert batcher.pace.rate_per_second() >= 3
        answers = await asyncio.gather(*handlers)
    finally:
        release.set()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert len({answer.agent_id for answer in answers}) == 3
    assert batcher.counts.answered_late == 0


async def _until(condition: Callable[[], bool], timeout_seconds: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_an_answer_that_arrived_with_the_timeout_is_the_one_given() -> None:
    """Answered in the same turn as the timeout: a registration is returned, a refusal
    (a key taken meanwhile, 409) raised as it came, not turned into a 503."""
    loop = asyncio.get_running_loop()
    registration = _registration()
    answered = _Waiting(_request("answered"), loop.create_future(), queued_at=0.0)
    answered.answer.set_result(registration)
    assert RegistrationBatcher._written_meanwhile(answered) is registration
    refused = _Waiting(_request("refused"), loop.create_future(), queued_at=0.0)
    refused.answer.set_exception(Conflict("This Idempotency-Key was used."))
    with pytest.raises(Conflict):
        RegistrationBatcher._written_meanwhile(refused)


async def test_a_stream_of_registrations_loses_no_wake(writer: WriterThread) -> None:
    """Registrations queued while the runner writes, takes the queue or sleeps its window
    are all written: the runner is woken once per group, and none waits for a wake that
    never comes."""

    async def write_group(requests: Sequence[RegistrationRequest]) -> list[Outcome]:
        await asyncio.sleep(0.001)
        return [_registration() for _ in requests]

    batcher = RegistrationBatcher(
        write_group=write_group, limit=10_000, runner_loop=writer.loop, max_group=50
    )
    runner = asyncio.create_task(writer.run(batcher.run()))
    try:
        handlers = []
        for wave in range(40):
            handlers += [
                asyncio.create_task(batcher.register(_request(f"w{wave}-{i}")))
                for i in range(wave % 7 + 1)
            ]
            await asyncio.sleep(0.002 * (wave % 3))
        answers = await asyncio.wait_for(asyncio.gather(*handlers), timeout=10)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert len({answer.agent_id for answer in answers}) == len(handlers)
    assert batcher.counts.agents == len(handlers)
