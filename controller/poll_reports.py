"""What an agent's poll reports: its applied version, drift, a failed apply and its
worker's /hit counts, read from the ``GET /config`` headers into the ledger.

A database restored from an older copy (or a failover that lost commits) can issue a
version number a second time, for other content, when no report of the first one
reached the controller. An agent whose worker still holds the first content would then
report the number and be counted as running the second. So an applied version sent with
its ETag (``X-Applied-ETag``) is believed only if the tag is well formed, names that
version and, for the version this replica serves, is its ETag; else the agent vouches for
no version (``DISOWNED``: its first confirmation on record is forgotten too) until it
reports the served content. A version other than the one served is checked by its number
only: the replica holds no other version's tag.
"""

from __future__ import annotations

import re
import uuid

from aiohttp import web
from multidict import istr

from common.constants import (
    APPLY_FAILURE_REASON_PATTERN,
    HEADER_AGENT_ID,
    HEADER_APPLIED_ETAG,
    HEADER_APPLIED_VERSION,
    HEADER_APPLY_FAILED,
    HEADER_HIT_COUNTS,
    HEADER_WORKER_DRIFT,
)
from controller import keys
from controller.constants import MAX_VERSIONS_AHEAD
from controller.credentials import Principal
from controller.etags import parse_version, strong_tag_version
from controller.hit_totals import parse_hit_counts
from controller.ledger import ApplyFailed, Ledger
from controller.sightings import NOT_APPLIED
from controller.snapshot import Snapshot

# The poll's headers as istr: a case-insensitive lookup then skips folding the name.
_AGENT_ID = istr(HEADER_AGENT_ID)
_APPLIED_VERSION = istr(HEADER_APPLIED_VERSION)
_APPLIED_ETAG = istr(HEADER_APPLIED_ETAG)
_WORKER_DRIFT = istr(HEADER_WORKER_DRIFT)
_APPLY_FAILED = istr(HEADER_APPLY_FAILED)
_FAILURE_REASON = re.compile(APPLY_FAILURE_REASON_PATTERN)
# What :func:`believed` answers for a claim it does not believe: recorded as NOT_APPLIED,
# and the agent's first confirmation on record is forgotten (Ledger.disown).
DISOWNED = -2


def record_sighting(request: web.Request, principal: Principal, served: Snapshot) -> int | None:
    """Note an agent's poll: its applied version, its drift report and its worker's hit
    counts; the applied version it reported. Only an agent token says which agent polled:
    X-Agent-ID sent with a shared token could name any agent, so none of it is believed.
    ``served`` is what this replica serves the agent: an applied tag is checked against
    it, and hit counts for versions far above it are not believed (see _record_hits)."""
    if principal.agent_id is None:
        return None
    headers = request.headers
    claimed = headers.get(_AGENT_ID)
    if (
        claimed is not None
        and claimed != principal.agent_key
        and claimed.lower() != str(principal.agent_id)
    ):
        return None
    applied = parse_version(headers.get(_APPLIED_VERSION, "").strip())
    note_report(
        request.app[keys.LEDGER],
        principal.agent_id,
        served,
        applied=applied,
        applied_etag=headers.get(_APPLIED_ETAG),
        drift=headers.get(_WORKER_DRIFT) == "1",
        failed=headers.get(_APPLY_FAILED),
        hits=headers.get(HEADER_HIT_COUNTS),
        ahead=False,
    )
    return applied


def note_report(
    ledger: Ledger,
    agent_id: uuid.UUID,
    served: Snapshot,
    *,
    applied: int | None,
    applied_etag: str | None = None,
    drift: bool,
    failed: str | None,
    hits: str | None,
    ahead: bool = True,
) -> None:
    """Record an agent's report, from a poll's headers or a watch stream's frame: an
    apply failure or hit counts that cannot be read are ignored. With ``ahead``, an
    applied (or failed) version above the one served is noted too (a poll notes it only
    where it reads a 200).

    No applied version keeps the one recorded (the agent has not looked at its worker
    yet, or drift is reported), except beside a failure: the agent then vouches for no
    version at all (its worker lost what it held and refuses it again, or cannot be
    read), and none is recorded (NOT_APPLIED), so no view counts the agent applied. An
    applied version whose ETag is not that version's (:func:`believed`) vouches for none
    either; its number still counts as issued."""
    report = None if failed is None else parse_apply_failed(failed)
    vouched = NOT_APPLIED if applied is None and report is not None else applied
    if vouched is not None and vouched != NOT_APPLIED and applied_etag is not None:
        vouched = believed(vouched, applied_etag, served)
        if vouched == DISOWNED:
            vouched = NOT_APPLIED
            ledger.disown(agent_id)
    ledger.record(agent_id, vouched, drift, report)
    if hits is not None:
        _record_hits(ledger, hits, served.version)
    if ahead:  # A version the agent failed to apply was issued too: it holds it.
        claimed = max(applied or 0, 0 if report is None else report.version)
        ledger.note_ahead(claimed, served=served.version)


def believed(applied: int, applied_etag: str, served: Snapshot) -> int:
    """``applied`` if ``applied_etag`` can be its tag: a strong ETag naming that version,
    and the served version's own ETag when it names that one; DISOWNED for anything
    else (a malformed or weak tag, another number, the served number with other content:
    a number issued twice)."""
    if strong_tag_version(applied_etag) != applied:
        return DISOWNED
    if applied == served.version and applied_etag.strip() != served.etag:
        return DISOWNED
    return applied


def _record_hits(ledger: Ledger, raw: str, served: int) -> None:
    """Sum a well-formed X-Hit-Counts report. One that names a version more than
    MAX_VERSIONS_AHEAD above the version served is ignored whole, as a malformed one is:
    no agent can make the controller keep counts for versions that cannot exist."""
    counts = parse_hit_counts(raw)
    if counts and max(counts) <= served + MAX_VERSIONS_AHEAD:
        ledger.record_hits(counts)


def parse_apply_failed(raw: str) -> ApplyFailed | None:
    """``X-Apply-Failed: <version> <reason>``; None for anything else (ignored)."""
    version_text, _, reason = raw.strip().partition(" ")
    version = parse_version(version_text)
    if version is None or not _FAILURE_REASON.match(reason):
        return None
    return ApplyFailed(version=version, reason=reason)
