"""The controller's own names and time limits, units in the names; what the services
share on the wire is in :mod:`common.constants`."""

from __future__ import annotations

from typing import Final

# How often a replica re-reads the current version from the database, so that with
# Redis down or absent it never serves a version older than about this.
CACHE_REFRESH_SECONDS: Final = 1.0
# How often the agents' last-seen and applied versions are written, in one batch (one
# UPDATE round trip): well inside a second, so every replica's /fleet, /agents and
# rollout view show a confirmed apply within one.
LEDGER_FLUSH_SECONDS: Final = 0.25
# The background loops, as logged (loop.crashed loop=...) and counted in /metrics
# (fleetconf_controller_loop_restarts_total{loop=...}).
CACHE_LOOP: Final = "controller-cache"
HINTS_LOOP: Final = "controller-hints"
LEDGER_LOOP: Final = "controller-ledger"
FLEET_COUNTS_LOOP: Final = "controller-fleet-counts"
STAGED_LOOP: Final = "controller-staged-rollouts"
# How long a verified agent token is trusted before it is looked up again. Revocations
# do not wait for this: every replica drops its cache when the revocation counter moves
# (at once on the hint, within CACHE_REFRESH_SECONDS without Redis); this is a backstop.
AGENT_TOKEN_CACHE_SECONDS: Final = 3600.0
# Agent ids with no usable credential, remembered so that a forged token is refused
# from memory: how many, and for how long (a backstop: such an id never turns valid).
UNKNOWN_AGENTS_CACHED: Final = 10_000
UNKNOWN_AGENT_CACHE_SECONDS: Final = 300.0
# Failed authentications one client address may make per window before it gets 429
# (the defaults of CONTROLLER_AUTH_FAILURES_PER_WINDOW and ..._WINDOW_SECONDS).
AUTH_FAILURES_PER_WINDOW: Final = 20
AUTH_FAILURE_WINDOW_SECONDS: Final = 10.0
# How often the agents' states that GET /metrics serves are read from the database.
FLEET_COUNTS_REFRESH_SECONDS: Final = 5.0
READINESS_TIMEOUT_SECONDS: Final = 2.0
# The most one database transaction may take, queueing for a connection included; far
# above a healthy transaction (milliseconds, row-lock waits between replicas included).
DATABASE_TIMEOUT_SECONDS: Final = 3.0
DATABASE_CONNECT_TIMEOUT_SECONDS: Final = 3
SHUTDOWN_TIMEOUT_SECONDS: Final = 10.0
# Connections waiting to be accepted: a fleet answering a hint arrives all at once, and
# aiohttp's default (128) drops SYNs that the clients then resend only after 1 s, 3 s...
# The kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG: Final = 4096
SQLITE_BUSY_TIMEOUT_MILLISECONDS: Final = 5_000
# The id of the fleet table's single row.
FLEET_ROW_ID: Final = 1
# Named credentials' tokens start with this (then 256 random bits, URL-safe, no dot), so a
# token is recognisable in a secret scan and never mistaken for an agent's.
NAMED_CREDENTIAL_PREFIX: Final = "fc_"
# The actor name of CONTROLLER_ADMIN_TOKEN; no named credential may take it.
BOOTSTRAP_ADMIN_NAME: Final = "admin"
# GET /audit/verify reads the chain in chunks of this many entries, one short
# transaction each, so a long log never holds a connection for long.
AUDIT_VERIFY_CHUNK_ENTRIES: Final = 1_000
# How far above the database's current version an agent's report of what it applied is
# believed: a database restored from an older copy lost at most this many versions. A
# report further above (a hostile or broken agent) neither numbers the next version nor
# makes the fleet look ahead, so no agent can push version numbers towards their limit.
MAX_VERSIONS_AHEAD: Final = 10_000
