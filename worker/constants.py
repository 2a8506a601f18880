"""The worker's names and limits, units in their names."""

from __future__ import annotations

from typing import Final

ENV_PREFIX: Final = "WORKER_"

DEFAULT_PORT: Final = 8080
DEFAULT_HIT_TIMEOUT_SECONDS: Final = 10.0
DEFAULT_HIT_MAX_BYTES: Final = 10 * 1024 * 1024
# WORKER_HIT_MAX_IN_FLIGHT: each /hit in flight may hold a whole upstream body (once: it is
# written to its caller in pieces, HIT_WRITE_CHUNK_BYTES), so the memory for bodies is at
# most about this x (WORKER_HIT_MAX_BYTES + HIT_WRITE_CHUNK_BYTES).
DEFAULT_HIT_MAX_IN_FLIGHT: Final = 64
MAX_HIT_MAX_IN_FLIGHT: Final = 10_000
# The Retry-After of a /hit refused because WORKER_HIT_MAX_IN_FLIGHT are in flight.
HIT_BUSY_RETRY_AFTER_SECONDS: Final = 1

# The upstream body is read in pieces this large, so an oversize body is never buffered.
HIT_READ_CHUNK_BYTES: Final = 64 * 1024
# And written to its caller in pieces this large, each once the connection has taken the
# last: what the caller has not read stays in the body held; the connection's buffer
# copies one piece at most. A body of up to one piece is written at once, as whole; in
# 64 KiB pieces a body of 1 MB was answered about a third slower.
HIT_WRITE_CHUNK_BYTES: Final = 1024 * 1024
# Redirects GET /hit follows before it answers 502.
HIT_MAX_REDIRECTS: Final = 5
# The answers GET /hit follows as redirects when they carry a Location; others pass on.
HIT_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
# On every worker answer, GET /hit's above all: a browser takes a body as the Content-Type
# it declares (the upstream's, for /hit), never as what its bytes look like.
HIT_NOSNIFF_HEADER: Final = "X-Content-Type-Options"
HIT_NOSNIFF: Final = "nosniff"
# The upstream statuses GET /hit passes on: a final answer (no 1xx) that HTTP can carry.
# Any other is a bad answer (502), as one that is not HTTP at all.
HIT_PASSED_STATUSES: Final = range(200, 600)
# What GET /hit answers as Content-Type when the upstream sent none.
DEFAULT_UPSTREAM_CONTENT_TYPE: Final = "application/octet-stream"

# GET /hits: the newest versions whose /hit outcomes the worker keeps counting.
HIT_COUNT_VERSIONS: Final = 16

# How long requests in flight may take to finish once the process is told to stop.
SHUTDOWN_TIMEOUT_SECONDS: Final = 10.0

# Hex digits of the SHA-256 of the held configuration in the ETag of GET/POST /config.
ETAG_DIGEST_HEX_DIGITS: Final = 16
# Hosts whose addresses are all loopback: the only ones an unauthenticated /config may use.
LOOPBACK_HOSTS: Final = frozenset({"localhost"})
