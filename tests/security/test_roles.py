"""Every route, with every kind of credential: the answer follows from the route's declared
``security``. No token, or one nobody issued (or since revoked), is 401; a valid token of
a role the route is not open to is 403; a role the route is open to is never refused.
Named credentials (POST /credentials) count as the role they were issued with: a named
admin as ``adminToken``, a viewer as ``viewerToken``."""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass

import pytest
from aiohttp import ClientResponse, web

from controller.app import create_app as create_controller_app
from tests.security.conftest import (
    ADMIN_TOKEN,
    REGISTRATION_TOKEN,
    WORKER_TOKEN,
    Client,
    MakeController,
    MakeWorker,
    bearer,
    controller_settings,
    issue,
    register,
    revoke,
    revoke_credential,
)
from tests.security.operations import CONTROLLER_ROUTES, VICTIM_CREDENTIAL, WORKER_ROUTES, Route
from worker.app import create_app as create_worker_app
from worker.settings import WorkerSettings

PROBLEM = "application/problem+json"
# Public files with no data in them: the document, Swagger UI, and the console (which
# reads everything through the documented API with the operator's token).
DOCS_ROUTES = frozenset({"openapi", "docs", "docs-static", "console", "console-asset"})


class Credential(enum.Enum):
    NONE = "none"
    GARBAGE = "garbage"
    NOT_BEARER = "not-bearer"
    ADMIN = "admin"
    REGISTRATION = "registration"
    AGENT = "agent"
    REVOKED_AGENT = "revoked-agent"
    FORGED_AGENT = "forged-agent"
    NAMED_ADMIN = "named-admin"
    VIEWER = "viewer"
    REVOKED_NAMED = "revoked-named-admin"
    FORGED_NAMED = "forged-named"


# The security scheme each valid credential stands for; the others identify nobody.
SCHEME = {
    Credential.ADMIN: "adminToken",
    Credential.REGISTRATION: "registrationToken",
    Credential.AGENT: "agentToken",
    Credential.NAMED_ADMIN: "adminToken",
    Credential.VIEWER: "viewerToken",
}

# Where the code and the OpenAPI document disagree; the document is the contract.
KNOWN_MISMATCHES: dict[tuple[str, Credential], str] = {}


def expected_refusal(route: Route, credential: Credential) -> int | None:
    """401 or 403; None when the route is open to this credential and must not refuse it."""
    if not route.security:
        return None
    scheme = SCHEME.get(credential)
    if scheme is None:
        return 401
    return None if scheme in route.security else 403


@dataclass(frozen=True, kw_only=True)
class Fleet:
    """The tokens of one controller: a live agent, a revoked one, named credentials (a
    revoked one too), and victims to name (an agent, a credential)."""

    agent_token: str
    revoked_token: str
    forged_token: str
    victim_id: str
    named_admin_token: str
    viewer_token: str
    revoked_named_token: str
    forged_named_token: str


async def _fleet(client: Client) -> Fleet:
    agent = await register(client, "agent")
    revoked = await register(client, "revoked")
    victim = await register(client, "victim")
    # Trusted (cached) first, then revoked: the revocation must win over the cache.
    polled = await client.get("/config", headers=bearer(revoked["agent_token"]))
    assert polled.status == 200
    await revoke(client, revoked["agent_id"])
    secret = agent["agent_token"].partition(".")[2]
    named_admin = await issue(client, "matrix-admin", "admin")
    revoked_named = await issue(client, "matrix-revoked", "admin")
    # Accepted first, then revoked: the revocation must win over what the replica holds.
    assert (await client.get("/settings", headers=bearer(revoked_named))).status == 200
    await revoke_credential(client, "matrix-revoked")
    await issue(client, VICTIM_CREDENTIAL, "viewer")
    return Fleet(
        agent_token=agent["agent_token"],
        revoked_token=revoked["agent_token"],
        forged_token=f"{agent['agent_id']}.{secret[::-1]}",
        victim_id=victim["agent_id"],
        named_admin_token=named_admin,
        viewer_token=await issue(client, "matrix-viewer", "viewer"),
        revoked_named_token=revoked_named,
        forged_named_token="fc_" + named_admin.removeprefix("fc_")[::-1],
    )


def _authorization(credential: Credential, fleet: Fleet) -> dict[str, str]:
    tokens = {
        Credential.GARBAGE: "garbage-token",
        Credential.ADMIN: ADMIN_TOKEN,
        Credential.REGISTRATION: REGISTRATION_TOKEN,
        Credential.AGENT: fleet.agent_token,
        Credential.REVOKED_AGENT: fleet.revoked_token,
        Credential.FORGED_AGENT: fleet.forged_token,
        Credential.NAMED_ADMIN: fleet.named_admin_token,
        Credential.VIEWER: fleet.viewer_token,
        Credential.REVOKED_NAMED: fleet.revoked_named_token,
        Credential.FORGED_NAMED: fleet.forged_named_token,
    }
    if credential is Credential.NONE:
        return {}
    if credential is Credential.NOT_BEARER:
        basic = base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()
        return {"Authorization": f"Basic {basic}"}
    return bearer(tokens[credential])


async def _check_refusal(resp: ClientResponse, refusal: int, sent: str) -> None:
    text = await resp.text()
    assert resp.status == refusal, text
    assert resp.content_type == PROBLEM
    problem = await resp.json()
    assert problem["status"] == refusal
    assert {"type", "title", "detail"} <= problem.keys()
    if refusal == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    for part in (sent, *sent.split(".")):
        if len(part) >= 8:
            assert part not in text, "the refusal echoes the credential"


def _matrix() -> list[object]:
    params: list[object] = []
    for route in CONTROLLER_ROUTES:
        for credential in Credential:
            reason = KNOWN_MISMATCHES.get((route.operation_id, credential))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            params.append(
                pytest.param(route, credential, marks=marks, id=f"{route.id}-{credential.value}")
            )
    return params


@pytest.mark.parametrize(("route", "credential"), _matrix())
async def test_controller_route_answers_by_declared_security(
    make_controller: MakeController, route: Route, credential: Credential
) -> None:
    """Each controller route gives 401/403/through exactly as its declared security says,
    and documents the refusal it gives."""
    client = await make_controller()
    fleet = await _fleet(client)
    auth = _authorization(credential, fleet)
    resp = await client.request(
        route.method,
        route.url(fleet.victim_id),
        data=route.body,
        headers=route.request_headers(auth),
    )
    refusal = expected_refusal(route, credential)
    if refusal is None:
        assert resp.status not in (401, 403), await resp.text()
        assert resp.status in route.statuses, await resp.text()
    else:
        await _check_refusal(resp, refusal, auth.get("Authorization", "").partition(" ")[2])
        assert refusal in route.statuses, f"{route.id} answers {refusal} without documenting it"


class WorkerCredential(enum.Enum):
    NONE = "none"
    GARBAGE = "garbage"
    NOT_BEARER = "not-bearer"
    WORKER = "worker"
    OTHER_SERVICE = "controller-admin-token"
    EXTENDED = "worker-token-plus-suffix"
    PREFIX = "worker-token-prefix"


def _worker_authorization(credential: WorkerCredential) -> dict[str, str]:
    tokens = {
        WorkerCredential.GARBAGE: "garbage-token",
        WorkerCredential.WORKER: WORKER_TOKEN,
        WorkerCredential.OTHER_SERVICE: ADMIN_TOKEN,
        WorkerCredential.EXTENDED: WORKER_TOKEN + "x",
        WorkerCredential.PREFIX: WORKER_TOKEN[:-1],
    }
    if credential is WorkerCredential.NONE:
        return {}
    if credential is WorkerCredential.NOT_BEARER:
        return {"Authorization": "Basic " + base64.b64encode(WORKER_TOKEN.encode()).decode()}
    return bearer(tokens[credential])


@pytest.mark.parametrize("secured", [True, False], ids=["with-token", "without-token"])
@pytest.mark.parametrize("credential", list(WorkerCredential), ids=lambda c: c.value)
@pytest.mark.parametrize("route", WORKER_ROUTES, ids=lambda r: r.id)
async def test_worker_route_answers_by_declared_security(
    make_worker: MakeWorker, route: Route, credential: WorkerCredential, secured: bool
) -> None:
    """With WORKER_TOKEN only that token opens a secured route; without, every route is open."""
    client = await make_worker(token=WORKER_TOKEN if secured else None)
    auth = _worker_authorization(credential)
    resp = await client.request(
        route.method, route.url(""), data=route.body, headers=route.request_headers(auth)
    )
    refused = secured and bool(route.security) and credential is not WorkerCredential.WORKER
    if refused:
        await _check_refusal(resp, 401, auth.get("Authorization", "").partition(" ")[2])
    else:
        assert resp.status not in (401, 403), await resp.text()
        assert resp.status in route.statuses, await resp.text()


def _near_misses(token: str) -> list[str]:
    return [token + "x", token[:-1], token.upper(), token[1:], token.replace("-", "_"), token * 2]


@pytest.mark.parametrize(
    ("method", "path", "token"),
    [
        ("POST", "/config", ADMIN_TOKEN),
        ("GET", "/settings", ADMIN_TOKEN),
        ("POST", "/register", REGISTRATION_TOKEN),
        ("GET", "/config", REGISTRATION_TOKEN),
    ],
)
async def test_near_miss_static_tokens_are_401(
    controller: Client, method: str, path: str, token: str
) -> None:
    """A token one character off, cut short, doubled or re-cased identifies nobody: 401."""
    for near_miss in _near_misses(token):
        resp = await controller.request(method, path, json={"url": None}, headers=bearer(near_miss))
        await _check_refusal(resp, 401, near_miss)


async def test_agent_token_near_misses_are_401(controller: Client) -> None:
    """An agent token re-cased, with its id re-spelled, or with another agent's secret is 401."""
    one, two = await register(controller, "one"), await register(controller, "two")
    agent_id, _, secret = one["agent_token"].partition(".")
    other_secret = two["agent_token"].partition(".")[2]
    for near_miss in [
        f"{agent_id.upper()}.{secret}",
        f"{{{agent_id}}}.{secret}",
        f"{agent_id}.{other_secret}",
        f"{agent_id}.{secret}x",
        f"{agent_id}.",
        f"{agent_id}{secret}",
        f"{two['agent_id']}.{secret}",
        secret,
    ]:
        resp = await controller.get("/config", headers=bearer(near_miss))
        await _check_refusal(resp, 401, near_miss)
    ok = await controller.get("/config", headers=bearer(one["agent_token"]))
    assert ok.status == 200


async def test_named_token_near_misses_are_401(controller: Client) -> None:
    """A named token altered, cut, re-cased, unprefixed or with another's secret is 401."""
    token = await issue(controller, "near-admin", "admin")
    other = await issue(controller, "near-viewer", "viewer")
    secret = token.removeprefix("fc_")
    for near_miss in [
        *_near_misses(token),
        secret,
        f"fc_{other.removeprefix('fc_')[:-1]}{secret[-1]}",
        f"fc-{secret}",
        f"FC_{secret}",
        f"near-admin.{secret}",
    ]:
        # A replacement that found nothing to replace, or another's secret that already
        # ended in this one's last character (1 in 64): a real token, not a near miss.
        if near_miss in (token, other):
            continue
        resp = await controller.get("/settings", headers=bearer(near_miss))
        await _check_refusal(resp, 401, near_miss)
    assert (await controller.get("/settings", headers=bearer(token))).status == 200


async def test_revoked_and_forged_tokens_on_each_backend(
    make_controller: MakeController, database_url: str
) -> None:
    """Both backends: revoked/forged agent or named tokens 401; agent, viewer 403 by role."""
    client = await make_controller(database_url=database_url)
    fleet = await _fleet(client)
    checked = (
        Credential.REVOKED_AGENT,
        Credential.FORGED_AGENT,
        Credential.AGENT,
        Credential.REVOKED_NAMED,
        Credential.FORGED_NAMED,
        Credential.VIEWER,
        Credential.NAMED_ADMIN,
    )
    for route in CONTROLLER_ROUTES:
        if not route.security:
            continue
        for credential in checked:
            auth = _authorization(credential, fleet)
            resp = await client.request(
                route.method,
                route.url(fleet.victim_id),
                data=route.body,
                headers=route.request_headers(auth),
            )
            refusal = expected_refusal(route, credential)
            if refusal is None:
                assert resp.status not in (401, 403), (route.id, await resp.text())
            else:
                await _check_refusal(resp, refusal, auth["Authorization"].partition(" ")[2])


def test_viewers_may_call_every_admin_get_but_the_credential_list() -> None:
    """viewerToken is documented on exactly the admin API's GETs, GET /credentials aside."""
    viewer = {route.operation_id for route in CONTROLLER_ROUTES if "viewerToken" in route.security}
    # The admin API: what the admin may call and neither agents nor registrars may.
    admin_gets = {
        route.operation_id
        for route in CONTROLLER_ROUTES
        if route.method == "GET"
        and "adminToken" in route.security
        and not route.security & {"agentToken", "registrationToken"}
    }
    assert viewer == admin_gets - {"listCredentials"}
    assert "listCredentials" in admin_gets


def test_every_controller_route_is_in_the_document() -> None:
    """The matrix covers every route the app serves: none is added beside the document."""
    app = create_controller_app(controller_settings("sqlite+aiosqlite:///unused.db"))
    documented = {(route.method, route.path) for route in CONTROLLER_ROUTES}
    assert _served(app) == documented


def _served(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        # HEAD comes with GET; "*" routes are the problem+json 404/405 fallbacks.
        if route.method not in ("HEAD", "*")
        and route.resource
        and route.resource.name not in DOCS_ROUTES
    }


def test_every_worker_route_is_in_the_document() -> None:
    """The worker matrix covers every route the worker serves."""
    app = create_worker_app(WorkerSettings(_env_file=None))
    documented = {(route.method, route.path) for route in WORKER_ROUTES}
    assert _served(app) == documented
