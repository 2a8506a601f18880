"""The audit log over HTTP: GET /audit (newest first, paged) and GET /audit/verify."""

from __future__ import annotations

from aiohttp import web

from common.http import json_response, read_query
from common.openapi import Operation, Response
from controller import audit, keys
from controller.audit_models import AuditEntry, AuditPage, AuditVerification
from controller.credentials import ADMIN_READERS, Principal
from controller.models import PageQuery
from controller.openapi_parts import (
    BAD_QUERY,
    NO_TOKEN,
    THROTTLED,
    UNAVAILABLE,
    WRONG_ROLE,
    page_parameters,
)


def _entry(entry: audit.Entry) -> AuditEntry:
    return AuditEntry(
        seq=entry.seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        target=entry.target,
        detail=entry.detail,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


async def list_audit(request: web.Request, _reader: Principal) -> web.Response:
    query = read_query(request, PageQuery)
    page = await audit.read_page(request.app[keys.DATABASE], limit=query.limit, offset=query.offset)
    entries = [_entry(entry) for entry in page.items]
    return json_response(
        AuditPage(entries=entries, total=page.total, limit=query.limit, offset=query.offset)
    )


async def verify_audit(request: web.Request, _reader: Principal) -> web.Response:
    result = await audit.verify(request.app[keys.DATABASE])
    return json_response(
        AuditVerification(
            ok=result.ok,
            entries=result.entries,
            first_bad_seq=result.first_bad_seq,
            last_seq=result.last_seq,
            last_hash=result.last_hash,
        )
    )


LIST_AUDIT = Operation(
    method="GET",
    path="/audit",
    handler=list_audit,
    operation_id="listAudit",
    summary="The audit log, one page at a time",
    description="Every state-changing admin action (config.publish, config.rollback, "
    "settings.update, agent.revoke), newest first. Each entry is chained to the one "
    "before by its hash; GET /audit/verify checks the chain.",
    tags=("audit",),
    roles=ADMIN_READERS,
    parameters=page_parameters("newer entries"),
    responses=(
        Response(status=200, description="One page of entries.", model=AuditPage),
        NO_TOKEN,
        WRONG_ROLE,
        THROTTLED,
        BAD_QUERY,
        UNAVAILABLE,
    ),
)

VERIFY_AUDIT = Operation(
    method="GET",
    path="/audit/verify",
    handler=verify_audit,
    operation_id="verifyAudit",
    summary="Check the audit log's hash chain",
    description="Walks the log from entry 1 in seq order and names the first entry that "
    "was edited or follows a deleted one. Keep last_hash elsewhere: a log rewritten "
    "from some entry on, hashes recomputed, verifies but no longer ends with it.",
    tags=("audit",),
    roles=ADMIN_READERS,
    responses=(
        Response(status=200, description="The result of the check.", model=AuditVerification),
        NO_TOKEN,
        WRONG_ROLE,
        THROTTLED,
        UNAVAILABLE,
    ),
)

OPERATIONS = (LIST_AUDIT, VERIFY_AUDIT)
