"""Names shared on the wire between the services: headers, media types, limits.

What two services (or a service and the CLI) must agree on lives here, once.
"""

from __future__ import annotations

from typing import Final

JSON_MEDIA_TYPE: Final = "application/json"
PROBLEM_MEDIA_TYPE: Final = "application/problem+json"

HEADER_CONFIG_VERSION: Final = "X-Config-Version"
HEADER_POLL_INTERVAL_SECONDS: Final = "X-Poll-Interval-Seconds"
HEADER_AGENT_ID: Final = "X-Agent-ID"
HEADER_APPLIED_VERSION: Final = "X-Applied-Version"
# Beside X-Applied-Version: the ETag of the configuration the worker confirmed holding,
# "<version>-<digest>". A database restored from an older copy can issue a number again
# for other content; the tag tells the two apart (see controller.poll_reports).
HEADER_APPLIED_ETAG: Final = "X-Applied-ETag"
# The longest applied ETag believed: quotes, a version number, a dash and the digest.
MAX_APPLIED_ETAG_CHARS: Final = 64
# On POST /register: a UUID the agent chose before its first attempt and sends on every
# retry, so a registration whose answer was lost is not made twice.
HEADER_IDEMPOTENCY_KEY: Final = "Idempotency-Key"
# Why an admin made a change: stored with the version and in the audit log.
HEADER_CHANGE_COMMENT: Final = "X-Change-Comment"
MAX_CHANGE_COMMENT_CHARS: Final = 500
# "1" on an agent's poll: its worker held a configuration the agent did not send since the
# agent's previous poll (replaced, or still there). Absent, or any other value: no drift.
HEADER_WORKER_DRIFT: Final = "X-Worker-Drift"
# "<version> <reason>" on an agent's poll while its worker refuses (or cannot be handed)
# that version, e.g. "12 invalid"; absent once an apply succeeds. The reason is a short
# slug (APPLY_FAILURE_REASON_PATTERN), one of the agent's APPLY_FAILURE_REASONS.
HEADER_APPLY_FAILED: Final = "X-Apply-Failed"
APPLY_FAILURE_REASON_PATTERN: Final = r"^[a-z][a-z-]{0,31}$"
# Why an apply failed: the worker refused the version (409 conflict, 4xx invalid), did not
# accept the agent's worker token, could not be reached, or answered something unusable.
APPLY_FAILURE_REASONS: Final = ("conflict", "invalid", "rejected", "unreachable", "bad-answer")
# The worker's GET /hit outcomes, reported by its agent on a request to the controller:
# "<version>:<requests>:<errors>[,...]", newest versions first, what the worker counted
# since the agent's previous report the controller answered. Errors are server errors,
# upstream errors and timeouts; requests are all outcomes. The controller ignores a
# malformed header entirely: longer than MAX_HIT_COUNTS_HEADER_CHARS, more than
# MAX_HIT_COUNT_ENTRIES entries, a version twice or above MAX_CONFIG_VERSION, a count above
# MAX_HITS_PER_REPORT, or more errors than requests.
HEADER_HIT_COUNTS: Final = "X-Hit-Counts"
MAX_HIT_COUNT_ENTRIES: Final = 8
MAX_HITS_PER_REPORT: Final = 1_000_000
MAX_HIT_COUNTS_HEADER_CHARS: Final = 512
# On every GET /config answer while the controller wants health reports more often than
# polls (a staged rollout runs): the agent reads its worker's counters this often.
HEADER_REPORT_INTERVAL_SECONDS: Final = "X-Report-Interval-Seconds"
# An agent's poll asks to be held until a change (RFC 7240: "wait=N"); the controller
# says it held it in the answer ("wait=N").
HEADER_PREFER: Final = "Prefer"
HEADER_PREFERENCE_APPLIED: Final = "Preference-Applied"
# The worker's GET /hit counters, as the agent reads them.
HITS_PATH: Final = "/hits"

# Request bodies are small JSON documents; anything larger is refused with 413.
MAX_REQUEST_BODY_BYTES: Final = 64 * 1024
# How long a request's body may take to arrive once its headers have (408 after).
BODY_READ_TIMEOUT_SECONDS: Final = 30.0
# Deeper JSON than this is refused with 422 before pydantic sees it.
MAX_JSON_DEPTH: Final = 32
MAX_URL_LENGTH: Final = 2048

# Where agents poll unless the controller names another path at registration.
POLL_URL: Final = "/config"
# The Redis channel hints are published on (CONTROLLER_HINT_CHANNEL changes it).
DEFAULT_HINT_CHANNEL: Final = "fleetconf:config"
# The poll intervals the controller may name; an agent ignores anything outside them.
MIN_POLL_INTERVAL_SECONDS: Final = 1
MAX_POLL_INTERVAL_SECONDS: Final = 86_400
# The largest configuration version: the controller stores versions in a 32-bit INTEGER
# column (PostgreSQL and SQLite alike), so no service accepts more.
MAX_CONFIG_VERSION: Final = 2**31 - 1
# Paged listings of the admin API.
DEFAULT_PAGE_LIMIT: Final = 100
MAX_PAGE_LIMIT: Final = 500
MAX_PAGE_OFFSET: Final = 2**31 - 1

# A client told Retry-After: s waits s * (1 + fraction * random()): never sooner than
# asked, and a fleet told the same s does not come back in the same instant. The agent
# waits so; a controller pacing a refused fleet counts on the mean, half the fraction.
RETRY_AFTER_JITTER_FRACTION: Final = 0.5
