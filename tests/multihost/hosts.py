"""A controller host, three edge hosts and an upstream host, as network namespaces running
the real services; what the multi-host tests start and read back.

::

    control segment 10.213.0.0/24 (a bridge in the switch namespace)
        ctl     10.213.0.1    controller :8000 (SQLite), redis-server :6379 (shipped ACL)
        edge1   10.213.0.11   agent, worker :8080 (on every interface)
        edge2   10.213.0.12   agent, worker :8080
        edge3   10.213.0.13   agent, worker :8080
    upstream segment 10.213.1.0/24 (a second bridge)
        up      10.213.1.1    the site the workers' GET /hit fetches, :80 (this event loop)
        edge1..3 10.213.1.11-13

The edges reach the controller and the upstream over different links, so an edge cut off
from the controller still reaches the site its configuration names.

Each edge is configured as an operator would: the variables of .env.edge.example with
the four it documents as required filled in, turned into each container's environment
by docker-compose.edge.yml's own ``environment`` sections.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import aiohttp
from aiohttp import web

from tests.docker.compose import (
    COMPOSE_FILES,
    ENV_EXAMPLES,
    ROOT,
    environment_of,
    interpolate,
    load_compose,
    read_env_example,
)
from tests.support.fleet import ConnectionTrouble, bearer
from tests.support.netns import Host, NamespacedService, Network, serve_inside
from tests.support.processes import AGENT_READY_LOG_LINE, ProcessGroup, wait_until

SEGMENTS: Final = {"control": "10.213.0", "upstream": "10.213.1"}
CONTROLLER_OCTET: Final = 1
UPSTREAM_OCTET: Final = 1
EDGE_OCTETS: Final = (11, 12, 13)
CONTROLLER_PORT: Final = 8000
REDIS_PORT: Final = 6379
UPSTREAM_PORT: Final = 80
# The worker's default port, as docker-compose.edge.yml publishes it.
WORKER_PORT: Final = 8080

# Every token at least 16 characters: the services refuse shorter ones at start-up.
ADMIN_TOKEN: Final = "multihost-admin-token"
REGISTRATION_TOKEN: Final = "multihost-registration-token"
REDIS_CONTROLLER_PASSWORD: Final = "multihost-redis-controller-password"
REDIS_AGENT_PASSWORD: Final = "multihost-redis-agent-password"
REDIS_ENTRYPOINT: Final = ROOT / "docker" / "redis" / "entrypoint.sh"
REDIS_READY_LOG_LINE: Final = "Ready to accept connections"
# What .env.edge.example asks the operator to fill in; everything else stays as given.
EDGE_DOCUMENTED_VARIABLES: Final = frozenset(
    {"AGENT_CONTROLLER_URL", "AGENT_REGISTRATION_TOKEN", "AGENT_HOSTNAME", "WORKER_TOKEN"}
)
HTTP_TIMEOUT_SECONDS: Final = 5.0
SETTLE_TIMEOUT_SECONDS: Final = 20.0


def redis_url(user: str, password: str, address: str) -> str:
    """The URL of one of the shipped ACL's Redis users on the controller host."""
    return f"redis://{user}:{password}@{address}:{REDIS_PORT}/0"


def edge_environments(
    variables: Mapping[str, str], *, state_dir: Path
) -> tuple[dict[str, str], dict[str, str]]:
    """The agent's and the worker's environment, from an edge env file's ``variables``.

    docker-compose.edge.yml's ``environment`` sections, interpolated. Two values name
    what only a container has, and become what one host has instead: the worker's
    address (``http://worker:8080`` on the compose network; here the worker is on the
    agent's host, the agent's default ``http://127.0.0.1:8080``) and the state volume (a
    directory of the test's own).
    """
    services = load_compose(COMPOSE_FILES["edge"])["services"]
    agent, worker = (
        {name: interpolate(value, variables) for name, value in environment_of(service).items()}
        for service in (services["agent"], services["worker"])
    )
    agent["AGENT_WORKER_URL"] = f"http://127.0.0.1:{WORKER_PORT}"
    agent["AGENT_STATE_DIR"] = str(state_dir)
    return agent, worker


def edge_variables(*, controller_url: str, hostname: str, worker_token: str) -> dict[str, str]:
    """.env.edge.example with the variables it says are required filled in."""
    variables = read_env_example(ENV_EXAMPLES["edge"])
    filled = {
        "AGENT_CONTROLLER_URL": controller_url,
        "AGENT_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
        "AGENT_HOSTNAME": hostname,
        "WORKER_TOKEN": worker_token,
    }
    assert set(filled) == EDGE_DOCUMENTED_VARIABLES <= set(variables)
    return {**variables, **filled}


@dataclass(kw_only=True)
class Edge:
    """One edge host: its agent and worker, and an HTTP client inside it."""

    hostname: str
    host: Host
    agent: NamespacedService
    worker: NamespacedService
    worker_token: str
    state_dir: Path
    http: aiohttp.ClientSession

    @property
    def address(self) -> str:
        """Its address on the control segment, where other hosts reach its worker."""
        return self.host.address("control")

    @property
    def worker_url(self) -> str:
        """The worker as a user on this host reaches it."""
        return f"http://127.0.0.1:{WORKER_PORT}"

    def saved_identity(self) -> dict[str, Any]:
        """What the agent saved at registration (its state directory's identity.json)."""
        identity: dict[str, Any] = json.loads((self.state_dir / "identity.json").read_text())
        return identity

    async def worker_holds(self) -> dict[str, Any]:
        """The worker's GET /config ``{"version", "config"}``, asked from this host."""
        headers = bearer(self.worker_token)
        async with self.http.get(f"{self.worker_url}/config", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
            return body

    async def hit(self) -> tuple[int, str]:
        """The worker's GET /hit, asked from this host: status and body."""
        async with self.http.get(f"{self.worker_url}/hit") as resp:
            return resp.status, await resp.text()


@dataclass(kw_only=True)
class UpstreamSite:
    """The site on the upstream host: a fixed answer per path."""

    host: Host
    replies: dict[str, str] = field(default_factory=dict)
    base_url: str = ""

    def respond(self, path: str, body: str) -> str:
        """Answer ``path`` with ``body`` from now on; the URL of ``path``."""
        self.replies[path] = body
        return f"{self.base_url}{path}"

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            body = self.replies.get(request.path)
            if body is None:
                return web.Response(status=404, text="no reply set")
            return web.Response(text=body)

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        return app


@dataclass(kw_only=True)
class MultiHost:
    """The hosts of one test, their services, and the admin's client on the controller host."""

    network: Network
    controller_host: Host
    controller: NamespacedService
    redis: NamespacedService
    edges: list[Edge]
    upstream: UpstreamSite
    admin: aiohttp.ClientSession

    @property
    def controller_url(self) -> str:
        return f"http://{self.controller_host.address('control')}:{CONTROLLER_PORT}"

    @property
    def agent_redis_url(self) -> str:
        """The subscribe-only identity the controller hands out (CONTROLLER_AGENT_REDIS_URL)."""
        return redis_url("agent", REDIS_AGENT_PASSWORD, self.controller_host.address("control"))

    async def publish(self, url: str) -> int:
        """POST /config as the admin; the new version."""
        async with self.admin.post(
            f"{self.controller_url}/config", json={"url": url}, headers=bearer(ADMIN_TOKEN)
        ) as resp:
            assert resp.status == 201, await resp.text()
            body: dict[str, Any] = await resp.json()
        return int(body["version"])

    async def agents_listed(self) -> list[dict[str, Any]]:
        """The controller's GET /agents."""
        async with self.admin.get(
            f"{self.controller_url}/agents", headers=bearer(ADMIN_TOKEN)
        ) as resp:
            assert resp.status == 200, await resp.text()
            body: dict[str, Any] = await resp.json()
        agents: list[dict[str, Any]] = body["items"]
        return agents

    async def wait_worker_holds(self, edge: Edge, url: str, *, timeout_seconds: float) -> float:
        """Seconds until ``edge``'s worker holds ``url``."""

        async def holds() -> bool:
            held: object = (await edge.worker_holds())["config"].get("url")
            return held == url

        return await wait_until(
            holds,
            timeout_seconds=timeout_seconds,
            what=f"{edge.hostname}'s worker holds {url}",
            ignoring=ConnectionTrouble,
            step_seconds=0.01,
        )


class MultiHostBuilder:
    """Starts the hosts and their services of one test; ``start()`` as a context manager."""

    def __init__(self, processes: ProcessGroup, directory: Path) -> None:
        self.processes = processes
        self.directory = directory

    def _service(
        self,
        name: str,
        host: Host,
        argv: list[str],
        env: Mapping[str, str],
        *,
        url: str | None = None,
        ready_log_line: str | None = None,
    ) -> NamespacedService:
        service = NamespacedService(
            name,
            host=host,
            argv=argv,
            env=env,
            log_path=self.directory / f"{name}.log",
            cwd=self.directory,
            url=url,
            ready_log_line=ready_log_line,
        )
        # The group stops it at the end and prints its log when the test failed.
        self.processes.services.append(service)
        return service

    def _redis(self, host: Host) -> NamespacedService:
        """redis-server with the shipped ACL, rendered by the shipped entrypoint."""
        secrets = self.directory / "redis-secrets"
        secrets.mkdir()
        (secrets / "redis_controller_password").write_text(REDIS_CONTROLLER_PASSWORD + "\n")
        (secrets / "redis_agent_password").write_text(REDIS_AGENT_PASSWORD + "\n")
        env = {
            "REDIS_ACL_SECRETS_DIR": str(secrets),
            "REDIS_ACL_FILE": str(self.directory / "users.acl"),
        }
        args = ["--port", str(REDIS_PORT), "--bind", host.address("control"), "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.directory)]
        argv = ["/bin/sh", str(REDIS_ENTRYPOINT), *args]
        return self._service("redis", host, argv, env, ready_log_line=REDIS_READY_LOG_LINE)

    def _controller(self, host: Host, *, poll_interval_seconds: int) -> NamespacedService:
        address = host.address("control")
        env = {
            "CONTROLLER_PORT": str(CONTROLLER_PORT),
            # The machine's PostgreSQL is on its own loopback, which no namespace reaches.
            "CONTROLLER_DATABASE_URL": f"sqlite+aiosqlite:///{self.directory}/controller.db",
            "CONTROLLER_ADMIN_TOKEN": ADMIN_TOKEN,
            "CONTROLLER_REGISTRATION_TOKEN": REGISTRATION_TOKEN,
            "CONTROLLER_POLL_INTERVAL_SECONDS": str(poll_interval_seconds),
            # The shipped ACL's two identities: the controller's may publish; the agents'
            # (handed out at registration) may only subscribe.
            "CONTROLLER_REDIS_URL": redis_url("controller", REDIS_CONTROLLER_PASSWORD, address),
            "CONTROLLER_AGENT_REDIS_URL": redis_url("agent", REDIS_AGENT_PASSWORD, address),
        }
        argv = [sys.executable, "-m", "controller"]
        return self._service(
            "controller", host, argv, env, url=f"http://{address}:{CONTROLLER_PORT}"
        )

    def _edge(
        self,
        host: Host,
        *,
        controller_url: str,
        agent_extra: Mapping[str, str],
        http: aiohttp.ClientSession,
    ) -> Edge:
        hostname = f"{host.name}.fleet.test"
        worker_token = f"multihost-worker-token-of-{host.name}"
        state_dir = self.directory / host.name / "agent-state"
        variables = edge_variables(
            controller_url=controller_url, hostname=hostname, worker_token=worker_token
        )
        agent_env, worker_env = edge_environments(variables, state_dir=state_dir)
        agent_env.update(agent_extra)
        python = sys.executable
        worker = self._service(
            f"{host.name}-worker",
            host,
            [python, "-m", "worker"],
            worker_env,
            url=f"http://127.0.0.1:{WORKER_PORT}",
        )
        agent = self._service(
            f"{host.name}-agent",
            host,
            [python, "-m", "agent"],
            agent_env,
            ready_log_line=AGENT_READY_LOG_LINE,
        )
        return Edge(
            hostname=hostname,
            host=host,
            agent=agent,
            worker=worker,
            worker_token=worker_token,
            state_dir=state_dir,
            http=http,
        )

    @asynccontextmanager
    async def start(
        self, *, poll_interval_seconds: int, agent_extra: Mapping[str, str]
    ) -> AsyncIterator[MultiHost]:
        """Every host and service started, the agents registered and their watch streams
        open on the controller (they would poll, then listen for hints, otherwise).

        ``agent_extra``: settings given to every agent beyond what .env.edge.example and
        docker-compose.edge.yml give it (docs/configuration.md documents every one).
        Leaving stops every service and deletes every namespace, pass or fail.
        """
        async with AsyncExitStack() as stack:
            network = stack.enter_context(Network(SEGMENTS))
            stack.push_async_callback(self.processes.stop_all)
            fleet = await self._build(network, stack, poll_interval_seconds, agent_extra)
            await _start(fleet)
            yield fleet

    async def _build(
        self,
        network: Network,
        stack: AsyncExitStack,
        poll_interval_seconds: int,
        agent_extra: Mapping[str, str],
    ) -> MultiHost:
        ctl = network.add_host("ctl", {"control": CONTROLLER_OCTET})
        up = network.add_host("up", {"upstream": UPSTREAM_OCTET})
        upstream = UpstreamSite(host=up)
        upstream.base_url = await stack.enter_async_context(
            serve_inside(up, upstream.app(), address=up.address("upstream"), port=UPSTREAM_PORT)
        )

        async def client(host: Host) -> aiohttp.ClientSession:
            return await stack.enter_async_context(
                host.session(timeout_seconds=HTTP_TIMEOUT_SECONDS)
            )

        controller_url = f"http://{ctl.address('control')}:{CONTROLLER_PORT}"
        edges = []
        for number, octet in enumerate(EDGE_OCTETS, start=1):
            host = network.add_host(f"edge{number}", {"control": octet, "upstream": octet})
            edges.append(
                self._edge(
                    host,
                    controller_url=controller_url,
                    agent_extra=agent_extra,
                    http=await client(host),
                )
            )
        return MultiHost(
            network=network,
            controller_host=ctl,
            controller=self._controller(ctl, poll_interval_seconds=poll_interval_seconds),
            redis=self._redis(ctl),
            edges=edges,
            upstream=upstream,
            admin=await client(ctl),
        )


async def _start(fleet: MultiHost) -> None:
    """Redis and the controller, then every worker and agent at once; wait until the
    controller serves every agent's watch stream (each registered and watching)."""
    await fleet.redis.start()
    await fleet.controller.start()
    await asyncio.gather(*(edge.worker.start() for edge in fleet.edges))
    await asyncio.gather(*(edge.agent.start() for edge in fleet.edges))
    await wait_until(
        partial(_watches_every_agent, fleet),
        timeout_seconds=SETTLE_TIMEOUT_SECONDS,
        what="the controller serves every edge agent's watch stream",
    )


async def _watches_every_agent(fleet: MultiHost) -> bool:
    async with fleet.admin.get(f"{fleet.controller_url}/metrics") as resp:
        text = await resp.text()
    return f"\nfleetconf_controller_watch_streams {float(len(fleet.edges))}\n" in text
