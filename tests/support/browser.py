"""Headless Chromium, from Debian's ``chromium`` package, driven over the DevTools protocol.

For tests that need a real browser (Swagger UI at ``/docs``, the console at ``/console``)::

    HeadlessChromium              one browser process group on a fresh profile, killed at the end
    └── Page                      its tab: every request, failure and script error it saw
        ├── navigate(url)
        ├── evaluate(expression)  a JSON value computed in the page
        ├── insert_text(text)     typed into the focused element, as a keyboard would
        ├── set_viewport(w, h)    the window size screenshots are taken at
        └── screenshot(path)      a PNG of the viewport

``chromium_or_skip()`` finds the browser: locally a missing one skips the test with the
command that installs it; under CI=true it fails instead.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import aiohttp

from tests.support.services import unavailable

CHROMIUM_PATH: Final = Path("/usr/bin/chromium")
INSTALL_COMMAND: Final = "apt-get install -y --no-install-recommends chromium"
# Headless as root on a machine with no outside network: without the background and
# component flags it stalls on refused connections; no proxy, so loopback stays direct.
CHROMIUM_FLAGS: Final = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--remote-debugging-port=0",
)
START_TIMEOUT_SECONDS: Final = 15.0
COMMAND_TIMEOUT_SECONDS: Final = 10.0
STOP_TIMEOUT_SECONDS: Final = 5.0
POLL_STEP_SECONDS: Final = 0.05
LOG_TAIL_CHARS: Final = 4_000


def chromium_or_skip() -> Path:
    """The Chromium executable; skip the test without one, or fail it under CI=true."""
    found = shutil.which("chromium")
    if found is not None:
        return Path(found)
    if CHROMIUM_PATH.exists():
        return CHROMIUM_PATH
    message = f"headless Chromium is not installed; install Debian's package: {INSTALL_COMMAND}"
    unavailable(message, ci_detail=" (CI=true: .ci/run installs it)")


@dataclass(kw_only=True)
class Request:
    """One network request of the page and how it ended."""

    url: str
    status: int | None = None
    error: str | None = None
    finished: bool = False

    @property
    def failed(self) -> bool:
        return self.error is not None or (self.status is not None and self.status >= 400)


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class Page:
    """A browser tab over one DevTools websocket; records requests and uncaught exceptions."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.requests: dict[str, Request] = {}
        self.exceptions: list[str] = []
        # Errors the browser logged itself (a Content-Security-Policy violation, a failed
        # load): (source, text).
        self.log_errors: list[tuple[str, str]] = []
        self.loaded = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result, or AssertionError with the browser's error."""
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        await self._socket.send_json({"id": command_id, "method": method, "params": params})
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_SECONDS):
                return await future
        finally:
            self._pending.pop(command_id, None)

    async def navigate(self, url: str) -> None:
        """Record the page's traffic from now on, and start loading ``url``."""
        for domain in ("Network", "Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        self.loaded.clear()
        result = await self.send("Page.navigate", url=url)
        if "errorText" in result:
            raise AssertionError(f"navigating to {url} failed: {result['errorText']}")

    async def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """The JSON value of ``expression`` in the page (of the promise it makes, with
        ``await_promise``); AssertionError if it throws."""
        result = await self.send(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def insert_text(self, text: str) -> None:
        """Type ``text`` into the element that has the focus."""
        await self.send("Input.insertText", text=text)

    async def set_viewport(self, width: int, height: int) -> None:
        """Lay the page out at ``width`` x ``height`` CSS pixels, one device pixel each."""
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    async def screenshot(self, path: Path) -> Path:
        """Write a PNG of what the viewport shows to ``path``; the path."""
        result = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(_write_file, path, base64.b64decode(result["data"]))
        return path

    def busy(self) -> bool:
        """Whether the page has not loaded yet or any request is still under way."""
        return not self.loaded.is_set() or any(not r.finished for r in self.requests.values())

    def failed_requests(self) -> list[Request]:
        return [request for request in self.requests.values() if request.failed]

    async def _read(self) -> None:
        async for message in self._socket:
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            data = message.json()
            future = self._pending.get(data.get("id", 0))
            if future is not None and not future.done():
                if "error" in data:
                    future.set_exception(AssertionError(f"DevTools: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
            elif "method" in data:
                self._on_event(data["method"], data.get("params", {}))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(AssertionError("the DevTools connection closed"))

    def _on_event(self, method: str, params: Mapping[str, Any]) -> None:
        request_id = params.get("requestId", "")
        if method == "Network.requestWillBeSent":
            self.requests[request_id] = Request(url=params["request"]["url"])
        elif method == "Network.responseReceived" and request_id in self.requests:
            self.requests[request_id].status = int(params["response"]["status"])
        elif method == "Network.loadingFinished" and request_id in self.requests:
            self.requests[request_id].finished = True
        elif method == "Network.loadingFailed" and request_id in self.requests:
            request = self.requests[request_id]
            request.error = params.get("blockedReason") or params.get("errorText") or "failed"
            request.finished = True
        elif method == "Page.loadEventFired":
            self.loaded.set()
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.log_errors.append((str(entry.get("source")), str(entry.get("text"))))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exception = details.get("exception", {})
            self.exceptions.append(str(exception.get("description") or details.get("text")))

    async def close(self) -> None:
        await self._socket.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class HeadlessChromium:
    """One headless Chromium on a fresh profile in ``directory``; ``page`` is its tab.

    It runs in its own process group (browser, renderers, utilities), which is killed
    as a whole when the ``async with`` block ends, pass or fail.
    """

    def __init__(self, executable: Path, directory: Path) -> None:
        self.executable = executable
        self.profile = directory / "chromium-profile"
        self.log_path = directory / "chromium.log"
        self._process: asyncio.subprocess.Process | None = None
        self._session: aiohttp.ClientSession | None = None
        self._page: Page | None = None

    @property
    def page(self) -> Page:
        if self._page is None:
            raise RuntimeError("the browser is not started")
        return self._page

    async def start(self) -> None:
        self.profile.mkdir(parents=True)
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                self.executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={self.profile}",
                "about:blank",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.profile)},
                start_new_session=True,
            )
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            port = await self._devtools_port()
            socket_url = await self._page_socket_url(port)
            socket = await self._session.ws_connect(socket_url, max_msg_size=0)
        self._page = Page(socket)

    async def _devtools_port(self) -> int:
        active_port = self.profile / "DevToolsActivePort"
        while not active_port.exists() or not active_port.read_text().strip():
            assert self._process is not None
            if self._process.returncode is not None:
                raise AssertionError(f"chromium exited with {self._process.returncode}")
            await asyncio.sleep(POLL_STEP_SECONDS)
        return int(active_port.read_text().split()[0])

    async def _page_socket_url(self, port: int) -> str:
        assert self._session is not None
        while True:
            async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            for target in targets:
                if target.get("type") == "page" and target.get("url") == "about:blank":
                    return str(target["webSocketDebuggerUrl"])
            await asyncio.sleep(POLL_STEP_SECONDS)

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    async def stop(self) -> None:
        """Close the connection, then SIGTERM the browser's process group, SIGKILL if it lingers."""
        try:
            if self._page is not None:
                await self._page.close()
            if self._session is not None:
                await self._session.close()
        finally:
            await self._kill_group()

    async def _kill_group(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                await process.wait()
        # Whatever of the group outlived the browser (or the browser itself) goes now.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()

    async def __aenter__(self) -> HeadlessChromium:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


@contextlib.asynccontextmanager
async def headless_chromium(directory: Path) -> AsyncIterator[HeadlessChromium]:
    """A started browser (or a skipped / failed test without one), stopped at the end."""
    async with HeadlessChromium(chromium_or_skip(), directory) as browser:
        yield browser
