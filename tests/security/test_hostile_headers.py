"""Hostile header values on every route of both services: refused with a 4xx or ignored,
never a 5xx, and a refused write changes nothing.

The requests are written byte for byte (see ``rawhttp``), so values a client library
would refuse to send (control characters, bytes that are not UTF-8, values past the
parser's limits) reach the server as an attacker would send them.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import pytest
from aiohttp.test_utils import TestServer

from tests.security.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    REGISTRATION_TOKEN,
    WORKER_TOKEN,
    Client,
    MakeController,
    MakeWorker,
    current_version,
    register,
)
from tests.security.operations import CONTROLLER_ROUTES, WORKER_ROUTES, Route
from tests.security.rawhttp import RawAnswer, build_request, send_raw

# The HTTP parser refuses some values before any handler runs; that is a 4xx too.
PARSER_REFUSAL = 400
PROBLEM = "application/problem+json"

HOSTILE_VALUES: dict[str, bytes] = {
    "empty": b"",
    "blanks": b" \t ",
    "word": b"garbage",
    "negative": b"-1",
    "minus-zero": b"-0",
    "plus": b"+5",
    "hex": b"0x10",
    "exponent": b"1e9",
    "fraction": b"1.5",
    "nan": b"NaN",
    "int32-max": b"2147483647",
    "int32-overflow": b"2147483648",
    "int64-overflow": b"9223372036854775808",
    "5000-digits": b"9" * 5000,
    "superscript-digit": "\u00b2".encode(),
    "arabic-digits": "\u0661\u0662".encode(),
    "fullwidth-digit": "\uff15".encode(),
    "non-ascii": "d\u00e9j\u00e0 \u65e5\u672c".encode(),
    "not-utf8": b"\xff\xfe\xfd",
    "nul": b"\x00",
    "control": b"a\x01b",
    "delete": b"\x7f",
    "ansi-escape": b"\x1b[31mred",
    "bare-cr": b"a\rb",
    "obs-fold": b"a\r\n b",
    "quoted-version": b'"1"',
    "weak-version": b'W/"1"',
    "star": b"*",
    "quoted-star": b'"*"',
    "tag-list": b'"1", W/"2", *, garbage,,',
    "quotes": b'"' * 100,
    "huge-quoted-version": b'"' + b"9" * 40 + b'"',
    "nil-uuid": str(uuid.UUID(int=0)).encode(),
    "braced-uuid": b"{" + str(uuid.uuid4()).encode() + b"}",
    "percent-encoded": b"%00%0d%0a",
    "long-8000": b"a" * 8000,
    "too-long-9000": b"a" * 9000,
    "far-too-long": b"a" * 100_000,
}

CONTROLLER_HEADERS = (
    "X-Agent-ID",
    "X-Applied-Version",
    "X-Applied-ETag",
    "If-Match",
    "If-None-Match",
    "X-Change-Comment",
)
# The operations that store a new version when they answer 201.
VERSION_WRITERS = frozenset({"postConfig", "rollbackConfig"})
WORKER_HEADERS = ("X-Config-Version", "If-Match", "If-None-Match", "X-Agent-ID")


def _credential_for(route: Route, agent_token: str) -> list[str | None]:
    """Tokens that pass the route's security, so the hostile header reaches the handler."""
    if not route.security:
        return [None]
    tokens: list[str | None] = []
    if "agentToken" in route.security:
        tokens.append(agent_token)
    if "registrationToken" in route.security:
        tokens.append(REGISTRATION_TOKEN)
    if "adminToken" in route.security:
        tokens.append(ADMIN_TOKEN)
    if "workerToken" in route.security:
        tokens.append(WORKER_TOKEN)
    return tokens


async def _send(
    client: Client,
    route: Route,
    path: str,
    headers: list[tuple[str, bytes]],
    token: str | None,
) -> RawAnswer:
    sent: list[tuple[str, str | bytes]] = list(route.request_headers().items())
    sent = [(name, value) for name, value in sent if name not in dict(headers)]
    if token is not None:
        sent.append(("Authorization", f"Bearer {token}"))
    sent.extend(headers)
    return await send_raw(client, build_request(route.method, path, sent, route.body))


def _acceptable(route: Route, answer: RawAnswer) -> bool:
    """A documented status or the parser's refusal, never a 5xx; a refusal as problem+json
    (the parser's included)."""
    return (
        answer.status < 500
        and (answer.status in route.statuses or answer.status == PARSER_REFUSAL)
        and (answer.status < 400 or answer.content_type == PROBLEM)
    )


@pytest.mark.parametrize("value", list(HOSTILE_VALUES.values()), ids=list(HOSTILE_VALUES))
async def test_controller_hostile_headers_never_5xx(
    make_controller: MakeController, value: bytes
) -> None:
    """X-Agent-ID, X-Applied-Version, If-Match, If-None-Match and Authorization garbage on
    every controller route: a documented 4xx or ignored, and only a 201 moves the version."""
    client = await make_controller(registration_burst=10_000)
    agent = await register(client)
    victim = await register(client, "victim")
    created = 0
    failures = []
    for route in CONTROLLER_ROUTES:
        path = route.url(victim["agent_id"])
        for token in _credential_for(route, agent["agent_token"]):
            for name in CONTROLLER_HEADERS:
                answer = await _send(client, route, path, [(name, value)], token)
                created += route.operation_id in VERSION_WRITERS and answer.status == 201
                if not _acceptable(route, answer):
                    failures.append((route.id, name, answer.status, answer.body[:300]))
        for authorization in (b"Bearer " + value, value):
            answer = await _send(client, route, path, [("Authorization", authorization)], None)
            allowed = ({401} if route.security else set(route.statuses)) | {PARSER_REFUSAL}
            refused_plainly = answer.status >= 400 and answer.content_type != PROBLEM
            if answer.status not in allowed or refused_plainly:
                failures.append((route.id, "Authorization", answer.status, answer.body[:300]))
    assert failures == []
    assert await current_version(client) == created


@pytest.mark.parametrize(
    ("applied", "recorded"),
    [
        ("0", 0),
        ("2147483647", 2147483647),
        ("2147483648", None),
        ("-1", None),
        ("99999999999999999999", None),
        (" 7 ", 7),
        ("\u0667", None),
        ("", None),
    ],
)
async def test_applied_version_edges_reach_the_database_safely(
    make_controller: MakeController, database_url: str, applied: str, recorded: int | None
) -> None:
    """On SQLite and PostgreSQL: an agent's X-Applied-Version is recorded only when it is a
    version number that fits the column; anything else is ignored, and the fleet views
    that write the recorded polls keep answering."""
    client = await make_controller(database_url=database_url)
    agent = await register(client)
    headers = {
        "Authorization": f"Bearer {agent['agent_token']}",
        "X-Agent-ID": agent["agent_id"].upper(),
        "X-Applied-Version": applied,
    }
    polled = await client.get("/config", headers=headers)
    assert polled.status == 200
    listed = await client.get(f"/agents/{agent['agent_id']}", headers=ADMIN)
    assert listed.status == 200, await listed.text()
    assert (await listed.json())["applied_version"] == recorded
    summary = await client.get("/fleet", headers=ADMIN)
    assert summary.status == 200, await summary.text()


HOSTILE_AGENT_IDS = [
    "not-a-uuid",
    "%00",
    "%ff%fe",
    "..%2F..%2Fsettings",
    "a" * 5000,
    "00000000-0000-0000-0000-000000000000",
    "{00000000-0000-0000-0000-000000000000}",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "%E2%80%AE",
    "1;DROP%20TABLE%20agents",
    "%27%20OR%20%271%27=%271",
]


@pytest.mark.parametrize("agent_id", HOSTILE_AGENT_IDS)
async def test_hostile_agent_ids_are_404(controller: Client, agent_id: str) -> None:
    """Agent ids that are not a registered UUID are 404 problem+json, for reading and
    revoking; nothing is revoked by them."""
    agent = await register(controller)
    for method in ("GET", "DELETE"):
        answer = await send_raw(
            controller,
            build_request(
                method, f"/agents/{agent_id}", [("Authorization", f"Bearer {ADMIN_TOKEN}")]
            ),
        )
        assert answer.status == 404, answer.body
        assert answer.content_type == "application/problem+json"
    still = await controller.get(
        "/config", headers={"Authorization": f"Bearer {agent['agent_token']}"}
    )
    assert still.status == 200


@pytest.mark.parametrize("secured", [True, False], ids=["with-token", "without-token"])
@pytest.mark.parametrize("value", list(HOSTILE_VALUES.values()), ids=list(HOSTILE_VALUES))
async def test_worker_hostile_headers_never_5xx(
    make_worker: MakeWorker, upstream: TestServer, value: bytes, secured: bool
) -> None:
    """X-Config-Version and conditional-header garbage on every worker route: a documented
    4xx or ignored; a refused POST /config leaves the held version alone."""
    client = await make_worker(token=WORKER_TOKEN if secured else None)
    body = json.dumps({"url": str(upstream.make_url("/"))}).encode()
    failures = []
    accepted_versions = [0]
    for route in WORKER_ROUTES:
        sent_route = dataclasses.replace(route, body=body) if route.has_body else route
        token = WORKER_TOKEN if secured and route.security else None
        for name in WORKER_HEADERS:
            answer = await _send(client, sent_route, route.url(""), [(name, value)], token)
            if route.has_body and answer.status == 200:
                sent = value if name == "X-Config-Version" else route.headers["X-Config-Version"]
                accepted_versions.append(int(sent.strip()))
            if not _acceptable(route, answer):
                failures.append((route.id, name, answer.status, answer.body[:300]))
    assert failures == []
    held = await client.get("/config", headers={"Authorization": f"Bearer {WORKER_TOKEN}"})
    assert (await held.json())["version"] == max(accepted_versions)
