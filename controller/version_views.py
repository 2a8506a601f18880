"""HTTP handlers for the configuration history: the stored versions, and one of them."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from common.auth import bearer_token
from common.errors import NotFound, ValidationFailed
from common.http import json_response, read_query
from common.models import WorkerConfig
from controller import keys, store
from controller.cache import etag_for
from controller.db import in_transaction
from controller.models import ConfigVersion, ConfigVersionPage, PageQuery
from controller.views import ADMIN, MAX_VERSION

VERSION_PARAMETER = "version"
_MAX_VERSION_DIGITS = len(str(MAX_VERSION))


async def _authorize(request: web.Request) -> None:
    await request.app[keys.AUTHENTICATOR].require(bearer_token(request), ADMIN)


def _version_number(request: web.Request) -> int:
    """The path's version: ASCII digits up to MAX_VERSION; anything else is refused (422)."""
    raw = request.match_info[VERSION_PARAMETER]
    if raw.isascii() and raw.isdigit() and len(raw) <= _MAX_VERSION_DIGITS:
        number = int(raw)
        if number <= MAX_VERSION:
            return number
    message = f"a version is a whole number from 0 to {MAX_VERSION}"
    raise ValidationFailed(
        f"The version in the path is not valid: {message}.",
        errors=[{"loc": [VERSION_PARAMETER], "msg": message, "type": "version_number"}],
    )


def _version(record: store.VersionRecord, current_version: int) -> ConfigVersion:
    return ConfigVersion(
        version=record.version,
        etag=etag_for(record.version),
        created_at=record.created_at,
        current=record.version == current_version,
        config=WorkerConfig.model_validate_json(record.body),
    )


async def list_versions(request: web.Request) -> web.Response:
    await _authorize(request)
    query = read_query(request, PageQuery)

    async def read(conn: AsyncConnection) -> tuple[int, store.VersionPage]:
        state = await store.read_fleet_state(conn)
        page = await store.read_version_page(conn, limit=query.limit, offset=query.offset)
        return state.current_version, page

    current_version, page = await in_transaction(request.app[keys.ENGINE], read)
    items = [_version(record, current_version) for record in page.items]
    return json_response(
        ConfigVersionPage(items=items, total=page.total, limit=query.limit, offset=query.offset)
    )


async def get_version(request: web.Request) -> web.Response:
    await _authorize(request)
    number = _version_number(request)

    async def read(conn: AsyncConnection) -> tuple[int, store.VersionRecord | None]:
        state = await store.read_fleet_state(conn)
        return state.current_version, await store.read_version(conn, number)

    current_version, record = await in_transaction(request.app[keys.ENGINE], read)
    if record is None:
        raise NotFound(
            f"No configuration version {number}; the newest is version {current_version}."
        )
    return json_response(_version(record, current_version))
