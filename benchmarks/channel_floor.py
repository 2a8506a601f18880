"""aiohttp's own floor per agent per change, for two ways of carrying a change and its
confirmation: a held poll answered and the confirming poll (what fleetconf does), or a
WebSocket frame each way (a watch stream, what etcd's watch is over gRPC).

No fleetconf code runs here: one bare aiohttp server holds both fleets, N raw keep-alive
connections whose polls it holds and N WebSockets, and the driver, in another process,
plays the agents. Each round publishes to one of the two fleets, alternately, and the
server reads its own CPU time from the publish until the N-th confirmation (a poll
carrying the new version, or a frame naming it) is in. What the controller adds to the
held-poll path (authentication, the ledger, metrics) is measured by ``held_release.py``;
this is the part no code of ours can take away, and so what a watch stream would save.

    .venv/bin/python benchmarks/channel_floor.py --agents 1000 --rounds 9

Prints a table, writes ``results/channel_floor.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _support as S
import aiohttp
from aiohttp import web

from common.event_loop import DEFAULT_EVENT_LOOP, loop_factory

RESULTS = "channel_floor.json"
MODES = ("held_poll", "websocket")
# A configuration of the size agents are served (url, version, a few fields).
BODY = json.dumps(
    {"url": "https://upstream.example.internal/v1/fleet/" + "a" * 60, "timeout_seconds": 5}
).encode()
AGENT_ID = "0d3e5f6a-7b8c-4c8e-9a71-0d3e5f6a7b8c"
TOKEN = "fa_" + "x" * 43


class Floor:
    """The server's side: both fleets, and the CPU of the round in progress."""

    def __init__(self, agents: int) -> None:
        self.agents = agents
        self.version = 1
        self.mode = ""
        self.confirms = 0
        self.started = 0.0
        self.cpu: float | None = None
        self.released: asyncio.Future[None] | None = None
        self.sockets: list[web.WebSocketResponse] = []

    def confirmed(self, mode: str, version: int) -> None:
        if mode != self.mode or version != self.version:
            return
        self.confirms += 1
        if self.confirms == self.agents:
            self.cpu = time.process_time() - self.started

    async def poll(self, request: web.Request) -> web.Response:
        applied = request.headers.get("X-Applied-Version")
        if applied is not None:
            self.confirmed("held_poll", int(applied))
        if self.released is None:
            self.released = asyncio.get_running_loop().create_future()
        await self.released
        return web.Response(
            body=BODY,
            content_type="application/json",
            headers={
                "ETag": f'"{self.version}-5dc5c505a79bfc2e"',
                "X-Poll-Interval": "60",
                "Preference-Applied": "wait=30",
            },
        )

    async def watch(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=False, max_msg_size=4096)
        await socket.prepare(request)
        self.sockets.append(socket)
        async for message in socket:
            self.confirmed("websocket", int(message.data))
        return socket

    async def publish(self, request: web.Request) -> web.Response:
        self.mode = request.query["mode"]
        self.version += 1
        self.confirms = 0
        self.cpu = None
        self.started = time.process_time()
        if self.mode == "held_poll":
            released, self.released = self.released, None
            if released is not None:
                released.set_result(None)
        else:
            frame = json.dumps({"version": self.version}).encode() + BODY
            for socket in self.sockets:
                await socket.send_bytes(frame)
        return web.json_response({"version": self.version})

    async def result(self, _request: web.Request) -> web.Response:
        return web.json_response({"cpu_seconds": self.cpu, "confirms": self.confirms})


def serve(port: int, agents: int) -> None:
    floor = Floor(agents)
    app = web.Application()
    app.router.add_get("/poll", floor.poll)
    app.router.add_get("/watch", floor.watch)
    app.router.add_post("/publish", floor.publish)
    app.router.add_get("/result", floor.result)
    web.run_app(
        app,
        host=S.LOOPBACK,
        port=port,
        print=None,
        access_log=None,
        loop=loop_factory(DEFAULT_EVENT_LOOP)(),
    )


class Agents:
    """The driver's side: N held polls and N WebSockets, each confirming what it gets."""

    def __init__(self, port: int, agents: int) -> None:
        self.port, self.agents = port, agents
        self.received: asyncio.Queue[float] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []

    async def poller(self) -> None:
        reader, writer = await asyncio.open_connection(S.LOOPBACK, self.port)
        applied = 1
        while True:
            writer.write(
                (
                    f"GET /poll HTTP/1.1\r\nHost: {S.LOOPBACK}:{self.port}\r\n"
                    f"Authorization: Bearer {TOKEN}\r\nX-Agent-ID: {AGENT_ID}\r\n"
                    f'If-None-Match: "{applied}-5dc5c505a79bfc2e"\r\nPrefer: wait=30\r\n'
                    f"X-Applied-Version: {applied}\r\n\r\n"
                ).encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            applied = int(head.split(b'ETag: "', 1)[1].split(b"-", 1)[0])
            self.received.put_nowait(time.monotonic())

    async def watcher(self, http: aiohttp.ClientSession) -> None:
        socket = await http.ws_connect(f"http://{S.LOOPBACK}:{self.port}/watch", autoping=False)
        async for message in socket:
            version = json.loads(message.data[: message.data.index(b"}") + 1])["version"]
            await socket.send_str(str(version))
            self.received.put_nowait(time.monotonic())

    async def connect(self, http: aiohttp.ClientSession) -> None:
        for _ in range(self.agents):
            self.tasks.append(asyncio.create_task(self.poller()))
            self.tasks.append(asyncio.create_task(self.watcher(http)))
        await asyncio.sleep(max(2.0, self.agents / 500))

    async def round(self, http: aiohttp.ClientSession, mode: str) -> dict[str, Any]:
        base = f"http://{S.LOOPBACK}:{self.port}"
        sent = time.monotonic()
        async with http.post(f"{base}/publish", params={"mode": mode}) as answer:
            answer.raise_for_status()
        last = sent
        for _ in range(self.agents):
            last = await asyncio.wait_for(self.received.get(), 30)
        cpu = None
        for _ in range(100):
            await asyncio.sleep(0.05)
            async with http.get(f"{base}/result") as answer:
                cpu = (await answer.json())["cpu_seconds"]
            if cpu is not None:
                break
        if cpu is None:
            raise RuntimeError(f"{mode}: the server did not count {self.agents} confirmations")
        return {"mode": mode, "server_cpu_seconds": cpu, "burst_seconds": last - sent}


async def drive(port: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        agents = Agents(port, args.agents)
        await agents.connect(http)
        rounds = []
        for k in range(args.rounds):
            for mode in MODES if k % 2 == 0 else reversed(MODES):
                await asyncio.sleep(0.5)
                result = await agents.round(http, mode)
                per_agent = result["server_cpu_seconds"] / args.agents * 1e6
                print(
                    f"  round {k + 1} {mode:9}: server CPU {result['server_cpu_seconds']:.3f} s,"
                    f" {per_agent:.1f} us per agent, burst {result['burst_seconds']:.3f} s",
                    flush=True,
                )
                rounds.append({**result, "round": k + 1, "server_us_per_agent": per_agent})
        for task in agents.tasks:
            task.cancel()
        return rounds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    S.raise_nofile()
    if args.serve:
        serve(args.serve, args.agents)
        return
    port = S.free_port()
    with ExitStack() as stack:
        workdir = S.tmpfs_workdir(stack, "fleetconf-channel-floor-", keep=False)
        server = S.spawn(
            [S.PYTHON, __file__, "--serve", str(port), "--agents", str(args.agents)],
            env=S.service_env_pythonpath(),
            log_path=workdir / "server.log",
        )
        stack.callback(S.stop_process, server)
        S.wait_http_ok(f"http://{S.LOOPBACK}:{port}/result", proc=server)
        with asyncio.Runner(loop_factory=loop_factory(DEFAULT_EVENT_LOOP)) as runner:
            rounds = runner.run(drive(port, args))
    rows = []
    summary: dict[str, Any] = {}
    for mode in MODES:
        mine = [r for r in rounds if r["mode"] == mode]
        us = S.median([r["server_us_per_agent"] for r in mine])
        burst = S.median([r["burst_seconds"] for r in mine])
        summary[mode] = {"server_us_per_agent": us, "burst_seconds": burst}
        rows.append([mode, len(mine), us, burst])
    ratio = (
        summary["held_poll"]["server_us_per_agent"] / summary["websocket"]["server_us_per_agent"]
    )
    print(S.table(["channel", "rounds", "server CPU us per agent", "burst s"], rows))
    print(f"held poll / websocket, server CPU per agent per change: {ratio:.2f}x")
    if not args.no_save:
        path = S.write_results(
            RESULTS,
            {
                "agents": args.agents,
                "rounds": rounds,
                "summary": summary,
                "ratio_held_poll_to_websocket": ratio,
                "machine": S.machine(),
                "packages": S.package_versions(),
            },
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
