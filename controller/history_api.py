"""The stored versions: the history, newest first, and one version with its content."""

from __future__ import annotations

from aiohttp import web

from common.constants import (
    MAX_CONFIG_VERSION,
)
from common.errors import NotFound, ValidationFailed
from common.http import json_response, read_query
from common.models import WorkerConfig
from common.openapi import Operation, Parameter, Response, problem
from controller import keys, store
from controller.config_api import VERSION_PARAMETER
from controller.credentials import ADMIN_READERS, Principal
from controller.etags import etag_for, parse_version
from controller.models import (
    ConfigVersion,
    ConfigVersionPage,
    PageQuery,
)
from controller.openapi_parts import (
    BAD_QUERY,
    NO_TOKEN,
    THROTTLED,
    UNAVAILABLE,
    WRONG_ROLE,
    page_parameters,
)
from controller.versions import (
    read_version,
    read_version_page,
)


def version_number(request: web.Request) -> int:
    """The path's version; anything but a version number is refused (422)."""
    number = parse_version(request.match_info[VERSION_PARAMETER])
    if number is not None:
        return number
    message = f"a version is a whole number from 0 to {MAX_CONFIG_VERSION}"
    raise ValidationFailed(
        f"The version in the path is not valid: {message}.",
        errors=[{"loc": [VERSION_PARAMETER], "msg": message, "type": "version_number"}],
    )


def _version(record: store.VersionRecord, current_version: int) -> ConfigVersion:
    provenance = record.provenance
    return ConfigVersion(
        version=record.version,
        etag=etag_for(record.version, record.body),
        created_at=record.created_at,
        current=record.version == current_version,
        config=WorkerConfig.model_validate_json(record.body),
        created_by=provenance.created_by,
        comment=provenance.comment,
        rolled_back_to=provenance.rolled_back_to,
    )


async def list_versions(request: web.Request, _admin: Principal) -> web.Response:
    query = read_query(request, PageQuery)
    current_version, page = await read_version_page(
        request.app[keys.DATABASE], limit=query.limit, offset=query.offset
    )
    items = [_version(record, current_version) for record in page.items]
    return json_response(
        ConfigVersionPage(items=items, total=page.total, limit=query.limit, offset=query.offset)
    )


async def get_version(request: web.Request, _admin: Principal) -> web.Response:
    number = version_number(request)
    current_version, record = await read_version(request.app[keys.DATABASE], number)
    if record is None:
        raise NotFound(
            f"No configuration version {number}; the newest is version {current_version}."
        )
    return json_response(_version(record, current_version))


LIST_VERSIONS = Operation(
    method="GET",
    path="/config/versions",
    handler=list_versions,
    operation_id="listConfigVersions",
    summary="The configuration history, one page at a time",
    description="Every stored version, newest first, each with its configuration. "
    'Version 0, the default configuration {"url": null} that agents get before any '
    "POST /config, is stored when the database is created and comes last.",
    tags=("config",),
    roles=ADMIN_READERS,
    parameters=page_parameters("newer versions"),
    responses=(
        Response(status=200, description="One page of versions.", model=ConfigVersionPage),
        NO_TOKEN,
        WRONG_ROLE,
        BAD_QUERY,
        THROTTLED,
        UNAVAILABLE,
    ),
)

GET_VERSION = Operation(
    method="GET",
    path="/config/versions/{version}",
    handler=get_version,
    operation_id="getConfigVersion",
    summary="One configuration version",
    description="Versions are immutable: the answer for a version never changes, "
    "except whether it is still the current one.",
    tags=("config",),
    roles=ADMIN_READERS,
    parameters=(
        Parameter(
            name=VERSION_PARAMETER,
            location="path",
            description="The version number (0 is the default configuration).",
            schema={"type": "integer", "minimum": 0, "maximum": MAX_CONFIG_VERSION},
            example=7,
        ),
    ),
    responses=(
        Response(status=200, description="The version.", model=ConfigVersion),
        NO_TOKEN,
        WRONG_ROLE,
        problem(
            404, "No such version (yet).", "No configuration version 12; the newest is version 7."
        ),
        problem(
            422,
            "The version is not a whole number from 0 to 2147483647.",
            "The version in the path is not valid: a version is a whole number from 0 "
            "to 2147483647.",
        ),
        THROTTLED,
        UNAVAILABLE,
    ),
)

OPERATIONS = (LIST_VERSIONS, GET_VERSION)
