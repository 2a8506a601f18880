"""The agent's names, defaults and time limits, units in their names."""

from __future__ import annotations

from pathlib import Path
from typing import Final

ENV_PREFIX: Final = "AGENT_"

DEFAULT_WORKER_URL: Final = "http://127.0.0.1:8080"
DEFAULT_STATE_DIR: Final = Path("./data/agent")
DEFAULT_BACKOFF_BASE_SECONDS: Final = 1.0
DEFAULT_BACKOFF_MAX_SECONDS: Final = 60.0
DEFAULT_REQUEST_TIMEOUT_SECONDS: Final = 10.0
# The status server: loopback only unless told otherwise (it needs no credential).
DEFAULT_STATUS_HOST: Final = "127.0.0.1"
DEFAULT_STATUS_PORT: Final = 8090

# A hinted version costs at most 1 + len(HINT_RECHECK_DELAYS_SECONDS) early polls: the
# hinted fetch, then a re-check after each of these delays while a poll still answers an
# older version (the replica had not heard the hint yet). The last is the replicas'
# staleness bound (the controller's CACHE_REFRESH_SECONDS); after it the hinted version
# is given up: a forged hint for a version that never comes costs no more.
HINT_RECHECK_DELAYS_SECONDS: Final = (0.25, 1.0)
# A hint's spread (how long an agent may wait, at random, before its fetch) is capped by
# the agent's poll interval and by this, whatever the message says.
HINT_MAX_SPREAD_SECONDS: Final = 30.0
# How many given-up hinted versions (and hinted poll intervals) an agent remembers: a
# hint for one of them costs nothing.
HINT_MEMORY_LENGTH: Final = 256
# Hinted fetches (a hint's fetch, a reconnection's check) come at most HINT_FETCH_BURST at
# once, then HINT_FETCHES_PER_SECOND: a flood of hints for ever higher versions, or for
# ever other poll intervals, would otherwise cost a poll each. One due beyond waits its
# turn; none is dropped.
HINT_FETCH_BURST: Final = 5
HINT_FETCHES_PER_SECOND: Final = 1.0
# The poll interval used until the controller has named one (registration or a poll).
DEFAULT_POLL_INTERVAL_SECONDS: Final = 30
# A poll sleeps interval * (1 - fraction * random()): never longer than one interval.
POLL_JITTER_FRACTION: Final = 0.1
# The least time between the starts of two polls after a held one (AGENT_LONG_POLL): the
# controller holds a poll until a change, so the next one goes out at once, but never in
# a tight loop. A report (drift, a failed apply) or a hint wakes the agent sooner.
HELD_POLL_MIN_GAP_SECONDS: Final = 1.0
# After the controller refused the watch stream (AGENT_WATCH; 404, 426, 503...), the
# agent polls this long before it asks for the stream again.
WATCH_RETRY_SECONDS: Final = 300.0
# A Retry-After longer than this is not believed; the agent waits this long instead.
MAX_RETRY_AFTER_SECONDS: Final = 3_600.0

# How many controller attempt start times (time.monotonic()) the agent remembers.
ATTEMPT_HISTORY_LENGTH: Final = 100

# Answers from the controller and the worker are small JSON documents.
MAX_ANSWER_BYTES: Final = 64 * 1024
# A peer's problem detail is quoted in log lines up to this many characters.
MAX_PROBLEM_DETAIL_CHARS: Final = 300
# Reading the worker's GET /hits before a poll waits at most this long: a slow worker
# delays the poll no more (its counts wait for the next read).
HIT_READ_TIMEOUT_SECONDS: Final = 2.0

# How long the loops get, once told to stop, to finish the request in hand.
STOP_GRACE_SECONDS: Final = 1.0
# The loops' task names, as logged (loop.crashed loop=...), counted in /metrics
# (fleetconf_agent_loop_restarts_total{loop=...}) and named by /healthz.
CONTROLLER_LOOP: Final = "agent-controller"
WORKER_LOOP: Final = "agent-worker"
HINTS_LOOP: Final = "agent-hints"
HIT_REPORT_LOOP: Final = "agent-hit-report"
WORKER_WATCH_LOOP: Final = "agent-worker-watch"

# The storage: files in the state directory (AGENT_STATE_DIR).
STORAGE_FORMAT: Final = 1
IDENTITY_FILE_NAME: Final = "identity.json"
# The Idempotency-Key of the registration under way, kept until an identity is.
REGISTRATION_KEY_FILE_NAME: Final = "registration.json"
# The last configuration: two slots, each written in place (agent/config_slots.py).
CONFIG_SLOT_NAMES: Final = ("config.a.json", "config.b.json")
# Where earlier releases kept it: read when no slot exists, removed once one is written.
LEGACY_CONFIG_FILE_NAME: Final = "config.json"
STORAGE_DIR_MODE: Final = 0o700
# What the storage writer tracks as on disk or not (agent/storage_writer.py): each state
# is one whole document, so its latest write is the one to try again after a failure.
CONFIG_STATE: Final = "config"
IDENTITY_STATE: Final = "identity"
REGISTRATION_STATE: Final = "registration"
# The files are private: identity.json holds the agent token, and a configured URL may
# carry a password.
STORAGE_FILE_MODE: Final = 0o600
# How long an idle connection to a peer is kept for the next request: longer than the
# default poll interval (30 s), so polls and hinted fetches reuse one connection instead
# of a fleet reconnecting at every change; shorter than aiohttp's server keep-alive
# (75 s), so the agent, not the server, closes it and a reused connection is never one
# the server is closing.
PEER_KEEPALIVE_SECONDS: Final = 70.0
# The connection to the worker held open to notice its end (agent.worker_watch): a ping
# on it this often, under aiohttp's server keep-alive (75 s) so the worker does not close
# it for idleness (and rarely: 1,000 agents in one benchmark host spent about 0.03 ms of
# CPU per agent per change on pings every 30 s); the answer read whole up to this size;
# a connection refused tried again at the agent's backoff, never waiting longer than this.
WORKER_WATCH_PING_SECONDS: Final = 60.0
WORKER_WATCH_MAX_ANSWER_BYTES: Final = 64 * 1024
WORKER_WATCH_RETRY_MAX_SECONDS: Final = 2.0
