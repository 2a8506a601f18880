"""Console logging, configured once by each service's ``main()``."""

from __future__ import annotations

import logging
import sys

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request its parser refused with a traceback that quotes the
    offending bytes, an Authorization header included. Keep one line, no bytes. Likewise
    a body left unread by an answer (a 401, say) that aiohttp drains afterwards and cannot
    decode (a bad ``Content-Encoding``): the client's fault, not an unhandled error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, RequestPayloadError):
            error = error.__cause__
        if isinstance(error, HttpProcessingError):
            record.msg = "http.bad_request error=%s status=%s"
            record.args = (type(error).__name__, error.code)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    server_logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server_logger.filters):
        server_logger.addFilter(MalformedRequestFilter())
