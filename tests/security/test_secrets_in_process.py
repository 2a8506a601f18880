"""The whole flow in one process, logging at DEBUG on every logger: no secret appears in
a log record, in an answer (except the registration answer, which hands the agent its
token and the Redis URL by contract, and POST /credentials, which shows a named
credential's token once), or in an OpenAPI document."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from agent.outcomes import ControllerOutcome
from agent.runner import Agent
from agent.settings import AgentSettings
from controller.routes import openapi_document as controller_document
from tests.security.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    REDIS_PASSWORD,
    REGISTRATION,
    REGISTRATION_TOKEN,
    WORKER_TOKEN,
    Client,
    MakeController,
    MakeWorker,
    bearer,
)
from tests.security.secrets_scan import Answers, found, record_text
from tests.support.redis_server import PrivateRedis
from tests.support.waiting import eventually
from worker.routes import openapi_document as worker_document

STATIC_SECRETS = {
    "admin token": ADMIN_TOKEN,
    "registration token": REGISTRATION_TOKEN,
    "worker token": WORKER_TOKEN,
    "redis password": REDIS_PASSWORD,
}


async def _call(
    answers: Answers, client: Client, method: str, path: str, **kwargs: Any
) -> tuple[int, str]:
    resp = await client.request(method, path, **kwargs)
    text = await resp.text()
    answers.add(f"{method} {path}", resp.status, resp.headers.items(), text)
    return resp.status, text


def _variants(secret: str) -> list[dict[str, str]]:
    """Ways a caller might send a secret wrongly: near misses and other schemes."""
    basic = base64.b64encode(f"user:{secret}".encode()).decode()
    return [
        bearer(secret + "x"),
        bearer(secret[:-1]),
        {"Authorization": f"Basic {basic}"},
        {"Authorization": f"Token {secret}"},
        {"Authorization": f"Bearer{secret}"},
        {"Authorization": secret},
    ]


async def _refused(answers: Answers, client: Client, method: str, path: str, **kw: Any) -> None:
    status, text = await _call(answers, client, method, path, **kw)
    assert 400 <= status < 500, (method, path, status, text)


async def _refused_requests(
    answers: Answers, controller: Client, worker: Client, secrets: dict[str, str]
) -> None:
    """Secrets sent in every wrong place: refused, and never echoed."""
    for secret in secrets.values():
        for headers in _variants(secret):
            await _refused(
                answers, controller, "POST", "/config", json={"url": None}, headers=headers
            )
            await _refused(answers, controller, "GET", "/config", headers=headers)
            await _refused(answers, controller, "GET", "/agents", headers=headers)
            await _refused(answers, worker, "POST", "/config", json={"url": None}, headers=headers)
        await _refused(answers, controller, "GET", f"/agents/{secret}", headers=ADMIN)
        await _refused(answers, controller, "GET", f"/agents?state={secret}", headers=ADMIN)
        await _refused(
            answers, controller, "POST", "/config", headers={**ADMIN, "If-Match": secret}
        )
        await _refused(
            answers,
            controller,
            "POST",
            "/config",
            json={"url": f"ftp://user:{secret}@example.org/"},
            headers=ADMIN,
        )
        await _refused(
            answers,
            controller,
            "POST",
            "/register",
            json={"hostname": f"not a host {secret}", "labels": {"k": [secret]}},
            headers=REGISTRATION,
        )
        await _refused(
            answers,
            controller,
            "PUT",
            "/settings",
            json={"poll_interval_seconds": secret},
            headers=ADMIN,
        )
        await _refused(
            answers,
            worker,
            "POST",
            "/config",
            json={"url": secret},
            headers={**bearer(WORKER_TOKEN), "X-Config-Version": secret},
        )


async def _named_credential_flow(answers: Answers, controller: Client) -> str:
    """Issue a named credential (the one answer that holds its token, by contract, so it is
    not recorded), use it, list it, revoke it, refuse it; its token."""
    resp = await controller.post(
        "/credentials", json={"name": "secret-viewer", "role": "viewer"}, headers=ADMIN
    )
    assert resp.status == 201
    token: str = (await resp.json())["token"]
    assert (await _call(answers, controller, "GET", "/fleet", headers=bearer(token)))[0] == 200
    await _call(answers, controller, "GET", "/credentials", headers=ADMIN)
    await _call(answers, controller, "DELETE", "/credentials/secret-viewer", headers=ADMIN)
    assert (await _call(answers, controller, "GET", "/fleet", headers=bearer(token)))[0] == 401
    return token


def _agent_settings(controller: Client, worker: Client, state_dir: Path, **kw: Any) -> Any:
    values: dict[str, Any] = {
        "controller_url": str(controller.make_url("")),
        "registration_token": REGISTRATION_TOKEN,
        "worker_url": str(worker.make_url("")),
        "worker_token": WORKER_TOKEN,
        "state_dir": state_dir,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.1,
        "hostname": "edge-secret-01",
        "log_level": "DEBUG",
        # Subscribed to Redis (with its password) from the start, not only once a stream
        # or a poll is refused: the subscription's logs are under test too.
        "watch": False,
        "long_poll": False,
        "_env_file": None,
    }
    values.update(kw)
    return AgentSettings(**values)


async def _worker_version(worker: Client) -> int:
    resp = await worker.get("/config", headers=bearer(WORKER_TOKEN))
    return int((await resp.json())["version"])


async def test_no_secret_in_logs_answers_or_documents(
    make_controller: MakeController,
    make_worker: MakeWorker,
    private_redis: PrivateRedis,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The whole flow at DEBUG: no secret in a log record, nor in an answer but two by contract."""
    # As configure_logging() does in every service: no access log lines. (This call
    # first: each set_level also sets the capturing handler's level.)
    caplog.set_level(logging.WARNING, logger="aiohttp.access")
    caplog.set_level(logging.DEBUG)
    admin = redis.Redis.from_url(private_redis.url)
    await admin.config_set("requirepass", REDIS_PASSWORD)
    await admin.aclose()
    redis_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{private_redis.port}/0"

    # One password on this Redis: agents are told the same URL, as CONTROLLER_AGENT_REDIS_URL.
    controller = await make_controller(
        redis_url=redis_url, agent_redis_url=redis_url, poll_interval_seconds=1
    )
    worker = await make_worker(token=WORKER_TOKEN, log_level="DEBUG")
    answers = Answers()
    for client in (controller, worker):
        await _call(answers, client, "GET", "/openapi.json")
        await _call(answers, client, "GET", "/docs")

    settings = _agent_settings(controller, worker, tmp_path / "agent")
    agent = Agent(settings)
    run = asyncio.create_task(agent.run())
    try:
        await eventually(lambda: agent.identity is not None)
        assert agent.identity is not None
        agent_secret = agent.identity.agent_token.partition(".")[2]
        secrets = {**STATIC_SECRETS, "agent token secret": agent_secret}

        status, _ = await _call(
            answers, controller, "POST", "/config", json={"url": "https://a.test/"}, headers=ADMIN
        )
        assert status == 201

        async def delivered(version: int) -> bool:
            return await _worker_version(worker) == version

        await eventually(lambda: delivered(1))
        await _call(answers, controller, "GET", "/agents", headers=ADMIN)
        await _call(answers, controller, "GET", "/fleet", headers=ADMIN)
        await _call(
            answers, controller, "GET", "/config", headers=bearer(agent.identity.agent_token)
        )
        secrets["named credential"] = await _named_credential_flow(answers, controller)
        await _refused_requests(answers, controller, worker, secrets)

        # Failures: Redis goes away, an intruder registers with a wrong token.
        private_redis.kill()
        status, _ = await _call(
            answers, controller, "POST", "/config", json={"url": "https://b.test/"}, headers=ADMIN
        )
        assert status == 201
        await eventually(lambda: delivered(2))
        intruder_settings = _agent_settings(
            controller,
            worker,
            tmp_path / "intruder",
            registration_token=REGISTRATION_TOKEN + "-wrong",
            worker_token=WORKER_TOKEN + "-wrong",
        )
        async with Agent(intruder_settings) as intruder:
            step = await intruder.sync_controller_once()
            assert step.outcome is ControllerOutcome.REGISTRATION_REJECTED
        # The subscriptions (the controller's and the agent's) notice Redis is gone, and
        # say so: the lines checked below must be written before the log is scanned.
        await eventually(lambda: _logged(caplog, "hints.subscription_lost") >= 2)
    finally:
        agent.request_stop()
        await asyncio.wait_for(run, timeout=10)

    secrets["wrong registration token"] = REGISTRATION_TOKEN + "-wrong"
    secrets["wrong worker token"] = WORKER_TOKEN + "-wrong"
    log_leaks = [
        (record.name, record.getMessage()[:200], names)
        for record in caplog.records
        if (names := found(record_text(record), secrets))
    ]
    assert log_leaks == []
    assert answers.leaks(secrets) == []
    assert _logged(caplog, "hints.subscribed") >= 1
    assert _logged(caplog, "hints.publish_failed") >= 1


def _logged(caplog: pytest.LogCaptureFixture, event: str) -> int:
    """How many captured records carry ``event``."""
    return sum(event in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("document", [controller_document, worker_document])
def test_openapi_documents_hold_no_configured_secret(document: Any) -> None:
    """The OpenAPI documents are built from code alone: no setting can leak into them."""
    text = str(document())
    assert found(text, STATIC_SECRETS) == []
    assert "never-log-me" not in text


async def test_openapi_served_by_a_configured_app_holds_no_secret(
    make_controller: MakeController, make_worker: MakeWorker
) -> None:
    """The documents the running services serve are the same, whatever their settings."""
    controller = await make_controller(
        redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:9/0",
        agent_redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:9/0",
    )
    worker = await make_worker(token=WORKER_TOKEN)
    for client, document in ((controller, controller_document), (worker, worker_document)):
        resp = await client.get("/openapi.json")
        text = await resp.text()
        assert found(text, STATIC_SECRETS) == []
        assert await resp.json() == document()
