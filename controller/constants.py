"""The controller's own names and time limits, units in the names; what the services
share on the wire is in :mod:`common.constants`."""

from __future__ import annotations

from typing import Final

# How stale a replica's view may be with Redis down or absent: it never serves a version,
# nor trusts a revoked token, longer than about this after the write.
CACHE_REFRESH_SECONDS: Final = 1.0
# How often it re-reads the database for that: twice per bound, so the refresh's own
# time and a busy event loop's lag fit inside the bound instead of adding to it (with a
# refresh every bound, a revocation that landed just after one was seen 1.27 s later on
# a loaded machine).
CACHE_REFRESH_PERIOD_SECONDS: Final = CACHE_REFRESH_SECONDS / 2
# A hint (another replica's change) makes this one re-read at once, but not sooner than
# this after its last hinted re-read began: Redis is untrusted, and a flood of forged
# hints then costs 20 re-reads a second, not one per hint. A real hint waits at most this.
HINTED_REFRESH_GAP_SECONDS: Final = 0.05
# Every time a replica stores is put on the database's clock (controller/db_clock.py),
# but a replica whose own clock is further off the database's than this says so
# (controller/clock_check.py): the host's time is not kept, and its logs are off too.
CLOCK_SKEW_LIMIT_SECONDS: Final = 1.0
# The clock's offset is the sample with the shortest round trip of the latest this many
# (one per cache refresh: about ten seconds' worth); the others carry the loop's lag.
CLOCK_SAMPLES: Final = 20
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
REGISTRATION_LOOP: Final = "controller-registrations"
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
# CONTROLLER_POLL_WAIT_MAX_SECONDS: below the common 60 s idle timeout of load balancers
# and reverse proxies, so a held poll is answered before one between cuts it.
DEFAULT_POLL_WAIT_MAX_SECONDS: Final = 30
# CONTROLLER_MAX_HELD_POLLS: a held poll costs a process a few kilobytes.
DEFAULT_MAX_HELD_POLLS: Final = 20_000
# The most controller processes CONTROLLER_WORKERS may ask for.
MAX_WORKERS: Final = 64
# How long the parent of several controller processes waits for them all to exit after
# it passed on a SIGTERM or SIGINT (their own shutdown, then their resources' cleanup),
# before it kills those that remain.
WORKERS_STOP_GRACE_SECONDS: Final = SHUTDOWN_TIMEOUT_SECONDS + 5.0
# How often a controller process started by a parent checks the parent is still there
# (a parent killed outright cannot pass on a signal): it stops when it is gone.
PARENT_CHECK_SECONDS: Final = 1.0
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
# Registrations are written in groups (controller.registration_batch): the first one to
# arrive waits this long for others, and one transaction writes at most this many (one
# multi-row INSERT: SQLAlchemy's insertmanyvalues pages 1,000 rows). Large groups matter
# in a storm: each transaction's round trips hand the GIL between the writer's thread and
# the busy event loop, and groups of 250 wrote 10,000 agents in 23 s, of 1,000 in 9-15 s.
REGISTRATION_BATCH_WINDOW_SECONDS: Final = 0.005
REGISTRATION_BATCH_MAX_AGENTS: Final = 1_000
# Registrations a replica holds unwritten (queued or being written) before it answers 429
# (the default of CONTROLLER_REGISTRATION_QUEUE_LIMIT); its Retry-After paces them back
# (controller.registration_pace).
REGISTRATION_QUEUE_LIMIT: Final = 2_000
# A queue whose oldest registration has waited this long is behind (the database is
# slower than the arrivals): newcomers get 429 too, before the 3 s bound would fail them
# with 503.
REGISTRATION_QUEUE_MAX_WAIT_SECONDS: Final = 1.0
# How long an Idempotency-Key of POST /register names its registration: a retry within it
# gets the same agent (with a fresh token) as long as that agent never polled; later, the
# key is refused (409) and the agent registers with a new one.
REGISTRATION_KEY_TTL_SECONDS: Final = 86_400.0

# How long a thread holding the GIL keeps it while another waits (the interpreter's
# default: 5 ms). See controller.serving.share_the_gil_quickly.
GIL_SWITCH_INTERVAL_SECONDS: Final = 0.0005

# The cyclic garbage collector's first-generation threshold once the controller serves
# (the interpreter's default: 700 new container objects). See
# controller.serving.settle_heap.
GC_YOUNG_THRESHOLD: Final = 20_000
