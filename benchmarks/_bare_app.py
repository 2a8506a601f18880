"""The yardstick for config_throughput.py: a bare aiohttp app whose one handler answers 304.

Run as ``python benchmarks/_bare_app.py PORT``; same aiohttp, same stock event loop, no
access log (as the controller runs), nothing else.
"""

from __future__ import annotations

import sys

from aiohttp import web

# As long as the controller's tags ("<version>-<16 hex digits of the content's digest>").
ETAG = '"1-0123456789abcdef"'
HEADERS = {"ETag": ETAG}


async def handler(request: web.Request) -> web.Response:
    return web.Response(status=304, headers=HEADERS)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    app = web.Application()
    app.router.add_get("/config", handler)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
