"""The shipped Redis ACL over TLS: the entrypoint started with REDIS_TLS_* (as the compose
file starts it) serves a TLS port with a throwaway CA's certificate, where the agent
identity subscribes and cannot publish, the controller identity publishes, and plain TCP
or an untrusted server certificate gets nowhere."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError

from common.constants import DEFAULT_HINT_CHANNEL
from common.hints import Hint, HintSubscription, encode_hint, subscriber_client
from tests.support.acl_redis import (
    AGENT_PASSWORD,
    CONTROLLER_PASSWORD,
    ENTRYPOINT,
    AclRedis,
    distinct_free_ports,
    require_commands,
)
from tests.support.services import free_port
from tests.support.waiting import eventually

OPENSSL_TIMEOUT_SECONDS = 30
CLIENT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *args],
        cwd=cwd,
        capture_output=True,
        timeout=OPENSSL_TIMEOUT_SECONDS,
        check=True,
    )


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate it signed, for localhost and 127.0.0.1."""
    require_commands("openssl")
    directory.mkdir()
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
             "-subj", "/CN=fleetconf test CA", cwd=directory)  # fmt: skip
    _openssl("req", "-new", *curve, "-keyout", "redis.key", "-out", "redis.csr",
             "-subj", "/CN=localhost", cwd=directory)  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "redis.crt", "-days", "1", "-extfile", "san.cnf",
             cwd=directory)  # fmt: skip
    return TlsFiles(
        ca=directory / "ca.crt", cert=directory / "redis.crt", key=directory / "redis.key"
    )


def tls_env(files: TlsFiles, port: int) -> dict[str, str]:
    return {
        "REDIS_TLS_PORT": str(port),
        "REDIS_TLS_CERT_FILE": str(files.cert),
        "REDIS_TLS_KEY_FILE": str(files.key),
        "REDIS_TLS_CA_FILE": str(files.ca),
    }


@dataclass(frozen=True)
class TlsRedis:
    server: AclRedis
    tls_port: int
    ca: Path

    def url(self, user: str, password: str, *, ca: Path | None = None) -> str:
        """The documented form: rediss://USER:PASSWORD@HOST:PORT/0?ssl_ca_certs=CA_FILE."""
        query = f"?ssl_ca_certs={quote(str(ca or self.ca))}"
        return f"rediss://{user}:{password}@127.0.0.1:{self.tls_port}/0{query}"


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[TlsRedis]:
    files = make_tls_files(tmp_path / "tls")
    plain_port, port = distinct_free_ports(2)
    server = AclRedis(tmp_path, tls_env(files, port), port=plain_port)
    try:
        server.wait_started(port)
        yield TlsRedis(server=server, tls_port=port, ca=files.ca)
    finally:
        server.stop()


@pytest.fixture
async def controller(tls_redis: TlsRedis) -> AsyncIterator[redis.Redis]:
    """A client made as the controller makes its publisher (from the URL alone)."""
    url = tls_redis.url("controller", CONTROLLER_PASSWORD)
    client = redis.Redis.from_url(url, socket_connect_timeout=CLIENT_TIMEOUT_SECONDS)
    yield client
    await client.aclose()


async def test_agent_subscribes_over_tls_and_hears_the_controller(
    tls_redis: TlsRedis, controller: redis.Redis
) -> None:
    """Over rediss:// with ssl_ca_certs, the agent's subscriber hears the controller's hint."""
    received: list[Hint] = []
    client = subscriber_client(tls_redis.url("agent", AGENT_PASSWORD))
    subscription = HintSubscription(client, DEFAULT_HINT_CHANNEL, on_hint=received.append)
    task = asyncio.create_task(subscription.run())
    try:
        await eventually(lambda: subscription.connected)
        hint = encode_hint(Hint(version=9, poll_interval_seconds=30))
        assert await controller.publish(DEFAULT_HINT_CHANNEL, hint) == 1
        await eventually(lambda: [h.version for h in received] == [9])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()


async def test_agent_cannot_publish_over_tls(tls_redis: TlsRedis) -> None:
    """The agent identity may PING over TLS, and PUBLISH is refused."""
    agent = subscriber_client(tls_redis.url("agent", AGENT_PASSWORD))
    try:
        assert await agent.ping()
        with pytest.raises(NoPermissionError):
            await agent.publish(DEFAULT_HINT_CHANNEL, "forged")
    finally:
        await agent.aclose()


async def test_controller_publishes_over_tls(controller: redis.Redis) -> None:
    """The controller identity may PUBLISH on the hint channel over TLS, and no other."""
    assert await controller.publish(DEFAULT_HINT_CHANNEL, "{}") == 0
    with pytest.raises(NoPermissionError):
        await controller.publish("another-channel", "x")


async def test_plain_connection_to_the_tls_port_fails(tls_redis: TlsRedis) -> None:
    """A redis:// (no TLS) client on the TLS port gets no answer, even with good credentials."""
    url = f"redis://agent:{AGENT_PASSWORD}@127.0.0.1:{tls_redis.tls_port}/0"
    plain = redis.Redis.from_url(
        url, socket_connect_timeout=CLIENT_TIMEOUT_SECONDS, socket_timeout=CLIENT_TIMEOUT_SECONDS
    )
    try:
        with pytest.raises((RedisConnectionError, TimeoutError)):
            await plain.ping()
    finally:
        await plain.aclose()


async def test_untrusted_server_certificate_is_refused(tls_redis: TlsRedis, tmp_path: Path) -> None:
    """A client that trusts another CA refuses the server's certificate."""
    other = make_tls_files(tmp_path / "other-ca")
    client = redis.Redis.from_url(
        tls_redis.url("agent", AGENT_PASSWORD, ca=other.ca),
        socket_connect_timeout=CLIENT_TIMEOUT_SECONDS,
    )
    try:
        with pytest.raises(RedisConnectionError):
            await client.ping()
    finally:
        await client.aclose()


def test_plain_port_still_serves_beside_tls(tls_redis: TlsRedis) -> None:
    """With TLS on, the plain port (the compose network's) still answers the ACL users."""
    done = subprocess.run(
        ["redis-cli", "-p", str(tls_redis.server.port), "--user", "agent", "--pass",
         AGENT_PASSWORD, "--no-auth-warning", "ping"],
        capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_SECONDS, check=False,
    )  # fmt: skip
    assert done.stdout.strip() == "PONG", done.stderr


def test_entrypoint_refuses_tls_without_its_files(tmp_path: Path) -> None:
    """REDIS_TLS_PORT set but a certificate file missing: the entrypoint exits, naming it."""
    require_commands("sha256sum")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("redis_controller_password", "redis_agent_password"):
        (secrets / name).write_text("a-password\n")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "REDIS_ACL_SECRETS_DIR": str(secrets),
        "REDIS_ACL_FILE": str(tmp_path / "users.acl"),
        "REDIS_TLS_PORT": str(free_port()),
        "REDIS_TLS_CERT_FILE": str(tmp_path / "missing.crt"),
    }
    done = subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), "--port", "0"],
        env=env, capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_SECONDS, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "missing.crt is missing or empty" in done.stderr
    assert not (tmp_path / "users.acl").exists()
