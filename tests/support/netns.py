"""Hosts as Linux network namespaces on this machine, for multi-host tests.

::

    Network                 the namespaces of one test, joined by a switch namespace; torn
    │                       down on exit, pass or fail
    └── Host                one namespace: its addresses, its links (down, up), sockets and
                            HTTP clients made inside it, commands run inside it
    NamespacedService       a ServiceProcess started with ``ip netns exec``
    serve_inside(...)       an aiohttp app served from a socket inside a host
    require_netns()         root and ``ip netns`` here, else skip (fail under CI=true)
    remove_leftovers()      the namespaces of runs that died before their teardown

Each namespace name starts with PREFIX and the id of the process that made it, so the
leftovers of a run that died are recognised (and removed, with the processes still in
them) without touching a run that is still going. Veth pairs are created straight inside
their namespaces: nothing is added to the machine's own network namespace, the addresses
exist only inside the namespaces made here, and no host has a default route, so no
packet can leave them.

The test itself stays in the machine's namespace. A socket belongs to the namespace its
creating thread was in, so ``Host.make_socket`` enters the host's namespace (setns(2), on
this thread only) just long enough to create one; an aiohttp client whose connector
uses it really connects from that host.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp import web

from tests.support.processes import (
    HEALTH_REQUEST_TIMEOUT_SECONDS,
    ServiceProcess,
)
from tests.support.services import unavailable

PREFIX: Final = "fcmh"
NETNS_DIR: Final = Path("/run/netns")
CLONE_NEWNET: Final = 0x40000000
IP_TIMEOUT_SECONDS: Final = 10.0
# The namespace of a host and of the switch: PREFIX, the creating pid, a sequence number.
_NAME: Final = re.compile(rf"{PREFIX}(?P<pid>\d+)n\d+-")
_SWITCH: Final = "switch"
_networks = itertools.count(1)


class NetnsError(RuntimeError):
    """An ``ip`` command failed; the message quotes its error output."""


def ip(*args: str) -> str:
    """Run ``ip ARGS``; its output. NetnsError when it fails."""
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_SECONDS, check=False
    )
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _netns_problem() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"{PREFIX}{os.getpid()}n0-probe"
    try:
        ip("netns", "add", probe)
        ip("netns", "delete", probe)
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` does not work here: {exc}"
    return None


def require_netns() -> None:
    """Skip the test when namespaces cannot be made here; under CI=true fail instead."""
    problem = _netns_problem()
    if problem is None:
        return
    unavailable(problem, ci_detail=", and CI=true: the multi-host tests need root and `ip netns`")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(namespace: str) -> None:
    """SIGKILL every process still in ``namespace`` (only tests put processes there)."""
    try:
        pids = ip("netns", "pids", namespace).split()
    except NetnsError:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def _delete(namespace: str) -> None:
    _kill_inside(namespace)
    with contextlib.suppress(NetnsError):
        ip("netns", "delete", namespace)


def remove_leftovers() -> list[str]:
    """Delete the namespaces of runs whose process is gone; their names."""
    removed: list[str] = []
    for path in sorted(NETNS_DIR.glob(f"{PREFIX}*")):
        match = _NAME.match(path.name)
        if match is not None and not _alive(int(match["pid"])):
            _delete(path.name)
            removed.append(path.name)
    return removed


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def _inside(namespace_path: Path) -> Iterator[None]:
    """This thread in the namespace at ``namespace_path``, and back afterwards."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(namespace_path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(target)
    finally:
        os.close(home)


@dataclass(frozen=True)
class Link:
    """One veth pair: ``interface`` inside the host, ``port`` on the switch's bridge."""

    segment: str
    interface: str
    port: str
    address: str


@dataclass
class Host:
    """One network namespace with an address on each segment it is plugged into."""

    name: str
    namespace: str
    switch_namespace: str
    links: dict[str, Link] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.namespace

    def address(self, segment: str) -> str:
        """This host's address on ``segment``."""
        return self.links[segment].address

    def link_down(self, segment: str) -> None:
        """Unplug the host from ``segment`` (its side of the veth pair goes down)."""
        ip("-n", self.namespace, "link", "set", "dev", self.links[segment].interface, "down")

    def link_up(self, segment: str) -> None:
        ip("-n", self.namespace, "link", "set", "dev", self.links[segment].interface, "up")

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def make_socket(
        self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM, proto: int = 0
    ) -> socket.socket:
        """A socket of this host's network."""
        with _inside(self.path):
            return socket.socket(family, kind, proto)

    def listening_socket(self, address: str, port: int) -> socket.socket:
        sock = self.make_socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
        return sock

    def session(self, *, timeout_seconds: float) -> aiohttp.ClientSession:
        """An HTTP client that connects from this host (no pooled connection is kept)."""

        def factory(info: AddrInfoType) -> socket.socket:
            family, kind, proto, _, _ = info
            return self.make_socket(family, kind, proto)

        connector = aiohttp.TCPConnector(force_close=True, socket_factory=factory)
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        return aiohttp.ClientSession(connector=connector, timeout=timeout)


class Network:
    """Namespaces for one test: a switch with one bridge per segment, and hosts on it.

    ``segments`` maps a segment's name to its /24 prefix (``{"control": "10.213.0"}``).
    ``with Network(...) as network:``; leaving the block deletes every namespace it made
    (and kills any process still in one), whatever happened inside it.
    """

    def __init__(self, segments: Mapping[str, str]) -> None:
        self.segments = dict(segments)
        self.tag = f"{PREFIX}{os.getpid()}n{next(_networks)}"
        self.switch = f"{self.tag}-{_SWITCH}"
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []

    def _add_namespace(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self._made.append(namespace)
        ip("-n", namespace, "link", "set", "dev", "lo", "up")

    def __enter__(self) -> Network:
        remove_leftovers()
        try:
            self._add_namespace(self.switch)
            for number in range(len(self.segments)):
                bridge = f"br{number}"
                ip("-n", self.switch, "link", "add", "name", bridge, "type", "bridge")
                ip("-n", self.switch, "link", "set", "dev", bridge, "up")
        except BaseException:
            self.close()
            raise
        return self

    def add_host(self, name: str, octets: Mapping[str, int]) -> Host:
        """A host plugged into each segment of ``octets`` with address <prefix>.<octet>/24."""
        if name in self.hosts or len(name) > 8:
            raise ValueError(f"host names are unique and at most 8 characters: {name!r}")
        host = Host(name, f"{self.tag}-{name}", self.switch)
        self.hosts[name] = host
        self._add_namespace(host.namespace)
        for index, (segment, octet) in enumerate(octets.items()):
            bridge = f"br{list(self.segments).index(segment)}"
            link = Link(
                segment=segment,
                interface=f"eth{index}",
                port=f"{name}-{index}",
                address=f"{self.segments[segment]}.{octet}",
            )
            self._plug(host, link, bridge)
            host.links[segment] = link
        return host

    def _plug(self, host: Host, link: Link, bridge: str) -> None:
        ip(
            "link", "add", "name", link.interface, "netns", host.namespace, "type", "veth",
            "peer", "name", link.port, "netns", self.switch,
        )  # fmt: skip
        ip("-n", self.switch, "link", "set", "dev", link.port, "master", bridge)
        ip("-n", self.switch, "link", "set", "dev", link.port, "up")
        ip("-n", host.namespace, "addr", "add", f"{link.address}/24", "dev", link.interface)
        ip("-n", host.namespace, "link", "set", "dev", link.interface, "up")

    def close(self) -> None:
        """Delete every namespace made here, hosts first; kill what still runs inside."""
        while self._made:
            _delete(self._made.pop())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class NamespacedService(ServiceProcess):
    """A ServiceProcess whose command runs inside ``host`` (``ip netns exec``).

    ``argv`` is the whole command (``[sys.executable, "-m", "worker"]``). Readiness is
    ServiceProcess's, with the health check made from inside the host.
    """

    def __init__(
        self,
        name: str,
        *,
        host: Host,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path,
        url: str | None = None,
        ready_log_line: str | None = None,
    ) -> None:
        super().__init__(
            name,
            " ".join(argv),
            env=env,
            log_path=log_path,
            cwd=cwd,
            url=url,
            ready_log_line=ready_log_line,
        )
        self.host = host
        self.argv = list(argv)

    def command(self) -> list[str]:
        # `ip netns exec` execs the command: the pid is the service's own, so signals
        # reach it directly.
        return self.host.command(self.argv)

    def health_session(self) -> aiohttp.ClientSession:
        # Readiness is checked from inside the host, where the service listens.
        return self.host.session(timeout_seconds=HEALTH_REQUEST_TIMEOUT_SECONDS)


@contextlib.asynccontextmanager
async def serve_inside(
    host: Host, app: web.Application, *, address: str, port: int
) -> AsyncIterator[str]:
    """Serve ``app`` in this event loop from ``address:port`` inside ``host``; its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.SockSite(runner, host.listening_socket(address, port))
        await site.start()
        yield f"http://{address}:{port}"
    finally:
        await runner.cleanup()
