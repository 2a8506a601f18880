"""The controller's own names and time limits, units in the names; what the services
share on the wire is in :mod:`common.constants`."""

from __future__ import annotations

from typing import Final

# How often a replica re-reads the current version from the database, so that with
# Redis down or absent it never serves a version older than about this.
CACHE_REFRESH_SECONDS: Final = 1.0
# How often the agents' last-seen and applied versions are written, in one batch.
LEDGER_FLUSH_SECONDS: Final = 2.0
# How long a verified agent token is trusted before it is looked up again. Revocations
# do not wait for this: every replica drops its cache when the revocation counter moves
# (at once on the hint, within CACHE_REFRESH_SECONDS without Redis); this is a backstop.
AGENT_TOKEN_CACHE_SECONDS: Final = 3600.0
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
# How far above the database's current version an agent's report of what it applied is
# believed: a database restored from an older copy lost at most this many versions. A
# report further above (a hostile or broken agent) neither numbers the next version nor
# makes the fleet look ahead, so no agent can push version numbers towards their limit.
MAX_VERSIONS_AHEAD: Final = 10_000
