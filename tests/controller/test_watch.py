"""The watch stream, ``GET /config/watch``: one WebSocket per agent, a frame per change."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from sqlalchemy.ext.asyncio import AsyncConnection

from common.watch import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_REPLACED,
    CLOSE_UNAUTHORIZED,
    REPORT_BURST,
    WATCH_URL,
)
from controller import keys, store
from tests.controller.conftest import (
    ADMIN,
    REGISTRATION,
    Client,
    ClientFactory,
    post_config,
    register,
)
from tests.support.metrics import scrape, value

FRAME_TIMEOUT_SECONDS = 5.0


def _auth(agent: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {agent['agent_token']}"}


async def _frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = await ws.receive(timeout=FRAME_TIMEOUT_SECONDS)
    assert message.type is WSMsgType.TEXT, message
    frame: dict[str, Any] = json.loads(message.data)
    return frame


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The close code the controller ended the stream with."""
    while True:
        message = await ws.receive(timeout=FRAME_TIMEOUT_SECONDS)
        if message.type is WSMsgType.CLOSE:
            code: int = message.data
            return code
        if message.type in (WSMsgType.CLOSED, WSMsgType.CLOSING):
            return ws.close_code
        assert message.type is WSMsgType.TEXT, message


async def _agent_on_version_1(client: Client) -> dict[str, Any]:
    assert (await post_config(client, "https://alpha.test/")).status == 201
    return await register(client)


async def _wait_for(predicate: Any, what: str) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_the_first_frame_carries_the_configuration_then_each_change_one(
    client: Client,
) -> None:
    """The stream opens with what the agent is served; a new version is one frame."""
    agent = await _agent_on_version_1(client)
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws:
        first = await _frame(ws)
        assert (first["version"], first["config"]) == (1, {"url": "https://alpha.test/"})
        assert first["poll_interval_seconds"] >= 1
        assert (await post_config(client, "https://bravo.test/")).status == 201
        second = await _frame(ws)
        assert (second["version"], second["config"]) == (2, {"url": "https://bravo.test/"})
        assert second["etag"] != first["etag"]


async def test_a_current_etag_opens_with_a_frame_without_the_configuration(
    client: Client,
) -> None:
    """An agent that holds the current version is told only the intervals."""
    agent = await _agent_on_version_1(client)
    poll = await client.get("/config", headers=_auth(agent))
    headers = {**_auth(agent), "If-None-Match": poll.headers["ETag"]}
    async with client.ws_connect(WATCH_URL, headers=headers) as ws:
        first = await _frame(ws)
        assert (first["version"], first["etag"], first["config"]) == (
            1,
            poll.headers["ETag"],
            None,
        )


async def _shown_after_report(client: Client, report: dict[str, Any]) -> dict[str, Any]:
    """GET /agents/{id} of an agent on version 1, once its stream sent ``report`` and the
    ledger wrote it."""
    agent = await _agent_on_version_1(client)
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws:
        await _frame(ws)
        await ws.send_str(json.dumps(report))
        ledger = client.app[keys.LEDGER]
        await _wait_for(lambda: ledger.pending >= 1, "the report reached the ledger")
        await ledger.flush()
        shown: dict[str, Any] = await (
            await client.get(f"/agents/{agent['agent_id']}", headers=ADMIN)
        ).json()
        return shown


async def test_a_report_is_recorded_like_a_poll(client: Client) -> None:
    """The agent's report frame sets its applied version, as X-Applied-Version would."""
    shown = await _shown_after_report(client, {"applied_version": 1})
    assert shown["applied_version"] == 1


async def test_a_failed_apply_is_reported(client: Client) -> None:
    """apply_failed in a report shows in the agent's view, as X-Apply-Failed would."""
    shown = await _shown_after_report(
        client, {"applied_version": None, "apply_failed": "1 invalid"}
    )
    assert (shown["apply_failed_version"], shown["apply_failed_reason"]) == (1, "invalid")


@pytest.mark.parametrize(
    "report",
    [
        "not json",
        json.dumps({"applied_version": "1"}),
        json.dumps({"applied_version": -1}),
        json.dumps({"applied_version": 1, "extra": True}),
        json.dumps({"worker_drift": "yes"}),
        json.dumps({"apply_failed": "x" * 65}),
        json.dumps({"hit_counts": "1:1:0," * 90}),
        json.dumps([1]),
    ],
)
async def test_a_report_that_cannot_be_read_closes_the_stream_and_records_nothing(
    client: Client, report: str
) -> None:
    """A malformed report ends the stream with 1008; nothing of it reaches the ledger."""
    agent = await _agent_on_version_1(client)
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws:
        await _frame(ws)
        await ws.send_str(report)
        assert await _closed(ws) == CLOSE_POLICY
    assert client.app[keys.LEDGER].pending == 0
    metrics = await scrape(client)
    assert value(metrics, "fleetconf_controller_watch_reports_refused_total") == 1


async def test_a_binary_or_oversized_frame_closes_the_stream(client: Client) -> None:
    """Only JSON text frames of at most 1 KiB are read."""
    agent = await _agent_on_version_1(client)
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws:
        await _frame(ws)
        await ws.send_bytes(b'{"applied_version": 1}')
        assert await _closed(ws) == CLOSE_POLICY
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws:
        await _frame(ws)
        await ws.send_str(json.dumps({"hit_counts": " " * 2000}))
        assert await _closed(ws) in (CLOSE_POLICY, 1009)
    assert client.app[keys.LEDGER].pending == 0


async def test_reports_faster_than_the_pace_close_the_stream(client: Client) -> None:
    """More than the burst of reports at once ends the stream with 1008."""
    agent = await _agent_on_version_1(client)
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws:
        await _frame(ws)
        for _ in range(REPORT_BURST + 5):
            await ws.send_str(json.dumps({"applied_version": 1}))
        assert await _closed(ws) == CLOSE_POLICY
    assert client.app[keys.WATCHES].reports <= REPORT_BURST


@pytest.mark.parametrize("token", [ADMIN, REGISTRATION])
async def test_only_agent_tokens_may_watch(client: Client, token: dict[str, str]) -> None:
    """Shared tokens get 403 problem+json: a stream speaks for one agent."""
    resp = await client.get(
        WATCH_URL, headers={**token, "Connection": "Upgrade", "Upgrade": "websocket"}
    )
    assert resp.status == 403
    assert resp.content_type == "application/problem+json"


async def test_without_an_upgrade_the_answer_is_426(client: Client) -> None:
    """A plain GET is told to upgrade, as problem+json."""
    agent = await _agent_on_version_1(client)
    resp = await client.get(WATCH_URL, headers=_auth(agent))
    assert resp.status == 426
    assert resp.content_type == "application/problem+json"
    assert resp.headers["Upgrade"] == "websocket"


async def test_without_a_token_the_answer_is_401(client: Client) -> None:
    """No token, no stream."""
    resp = await client.get(WATCH_URL, headers={"Connection": "Upgrade", "Upgrade": "websocket"})
    assert resp.status == 401


async def test_a_revoked_agent_is_closed_with_4401_and_handed_nothing(client: Client) -> None:
    """Revoking an agent closes its stream at once; the next version never reaches it."""
    agent = await _agent_on_version_1(client)
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws:
        await _frame(ws)
        revoked = await client.delete(f"/agents/{agent['agent_id']}", headers=ADMIN)
        assert revoked.status == 204
        assert (await post_config(client, "https://bravo.test/")).status == 201
        assert await _closed(ws) == CLOSE_UNAUTHORIZED


async def test_a_token_revoked_elsewhere_closes_the_stream(client: Client) -> None:
    """When the replica learns of a revocation it did not make, every stream checks its
    token in full: the revoked one closes."""
    agent = await _agent_on_version_1(client)
    other = await register(client)
    async with (
        client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws,
        client.ws_connect(WATCH_URL, headers=_auth(other)) as kept,
    ):
        await _frame(ws)
        await _frame(kept)
        database = client.app[keys.DATABASE]

        async def revoke(conn: AsyncConnection) -> bool:
            return await store.revoke_agent(conn, uuid.UUID(agent["agent_id"]))

        assert await database.transaction(revoke)
        client.app[keys.AGENT_TOKENS].forget_all()
        assert await _closed(ws) == CLOSE_UNAUTHORIZED
        assert (await post_config(client, "https://bravo.test/")).status == 201
        assert (await _frame(kept))["version"] == 2


@pytest.mark.parametrize("cap", [None, 1], ids=["default_cap", "at_the_cap"])
async def test_a_second_stream_of_the_same_agent_replaces_the_first(
    make_client: ClientFactory, cap: int | None
) -> None:
    """One stream per agent: the older is closed with 4000. At the cap too: a
    reconnecting agent whose old stream the replica still serves is not refused."""
    client = await make_client(**({} if cap is None else {"max_held_polls": cap}))
    agent = await _agent_on_version_1(client)
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as first:
        await _frame(first)
        async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as second:
            await _frame(second)
            assert await _closed(first) == CLOSE_REPLACED
            assert len(client.app[keys.WATCHES]) == 1


async def test_streams_count_against_the_held_poll_cap(make_client: ClientFactory) -> None:
    """Beyond CONTROLLER_MAX_HELD_POLLS, a stream is refused with 503: the agent polls."""
    client = await make_client(max_held_polls=1)
    agent = await _agent_on_version_1(client)
    other = await register(client)
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws:
        await _frame(ws)
        held = client.app[keys.CACHE].held
        await _wait_for(lambda: held.streams == 1, "the stream waits")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(WATCH_URL, headers=_auth(other))
        assert refused.value.status == 503


async def test_shutdown_closes_streams_with_1001(make_client: ClientFactory) -> None:
    """A stopping replica closes every stream as going away."""
    client = await make_client()
    agent = await _agent_on_version_1(client)
    ws = await client.ws_connect(WATCH_URL, headers=_auth(agent))
    await _frame(ws)
    closing = asyncio.create_task(_closed(ws))
    client.app[keys.CACHE].held.close()
    assert await closing == CLOSE_GOING_AWAY


async def test_an_interval_change_alone_is_a_frame_without_configuration(
    client: Client,
) -> None:
    """A new poll interval reaches a watching agent without a configuration."""
    agent = await _agent_on_version_1(client)
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws:
        first = await _frame(ws)
        interval = first["poll_interval_seconds"] + 7
        resp = await client.put(
            "/settings", headers=ADMIN, json={"poll_interval_seconds": interval}
        )
        assert resp.status == 200, await resp.text()
        frame = await _frame(ws)
        assert (frame["version"], frame["poll_interval_seconds"], frame["config"]) == (
            1,
            interval,
            None,
        )


async def test_streams_show_in_the_metrics(client: Client) -> None:
    """Open streams, frames sent and reports read are counted."""
    agent = await _agent_on_version_1(client)
    async with client.ws_connect(WATCH_URL, headers=_auth(agent)) as ws:
        await _frame(ws)
        await ws.send_str(json.dumps({"applied_version": 1}))
        await _wait_for(lambda: client.app[keys.WATCHES].reports == 1, "the report was read")
        metrics = await scrape(client)
        assert value(metrics, "fleetconf_controller_watch_streams") == 1
        assert value(metrics, "fleetconf_controller_watch_frames_sent_total") == 1
        assert value(metrics, "fleetconf_controller_watch_reports_total") == 1
