"""Schemathesis against the controller (on SQLite and on PostgreSQL) and the worker, run
as real processes, with the committed docs/openapi/ documents as the oracle: no 5xx,
every answer as documented (status, content type, body schema, headers, problem+json on
errors), exactly the documented input accepted, every role answered as the document's
security says, and nothing refused changes any state.

Every operation gets positive and negative requests with its own credential and with
every other one; each of those runs must have sent requests. An operation with nothing
schemathesis can get wrong (no parameter, no body) gets hand-made hostile requests
instead of generated negative ones (fuzzing.hostile_cases). Budget: see fuzzing.py and
tests/README.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from schemathesis import GenerationMode

from tests.security.conftest import ADMIN, WORKER_TOKEN, bearer
from tests.security.fuzz.fuzzing import (
    ACCEPTANCE_CHECKS,
    CONFORMANCE_CHECKS,
    MODES,
    FuzzRun,
    Target,
    examples_per_operation,
    examples_per_other_credential,
    fuzz,
    hostile_cases,
    load_committed,
    operation,
    sent_json,
)
from tests.security.fuzz.services import (
    REQUEST_TIMEOUT_SECONDS,
    FuzzedController,
)
from tests.security.operations import CONTROLLER_ROUTES, WORKER_ROUTES, Route

pytestmark = pytest.mark.e2e

# Headers an agent sends that are ignored, by design, when they are garbage (a poll
# with a malformed X-Applied-Version still gets the configuration).
IGNORED_GARBAGE = {"controller-getConfig"}
# Rules JSON Schema cannot state, documented in words (and tested by hand in
# tests/controller/test_staged_api.py): a staged rollout's steps are strictly increasing
# and end at 100, so schema-valid data such as [1] or [100, 5] is refused (422). Every
# other check still runs on these operations, the negative cases' rejection included.
UNSTATED_RULES = {"controller-startRollout"}
# The credential each operation is fuzzed with in depth: the role it exists for.
PRIMARY_SCHEME = {"controller-register": "registration", "controller-getConfig": "agent"}
SCHEME_OF_CREDENTIAL = {
    "admin": "adminToken",
    "viewer": "viewerToken",
    "registration": "registrationToken",
    "agent": "agentToken",
}


def refused_with(statuses: frozenset[int]) -> Any:
    """A check: the answer is one of ``statuses`` (a caller the operation is not for)."""

    def refused(ctx: Any, response: Any, case: Any) -> bool:
        if response.status_code not in statuses:
            raise AssertionError(
                f"answered {response.status_code} to a caller it is not for; "
                f"expected one of {sorted(statuses)}"
            )
        return True

    return refused


def _expected_refusal(route: Route, credential: str) -> frozenset[int] | None:
    """None when ``credential`` may call ``route``; else the statuses that refuse it."""
    if not route.security or SCHEME_OF_CREDENTIAL.get(credential) in route.security:
        return None
    if credential in SCHEME_OF_CREDENTIAL:
        return frozenset({403})
    return frozenset({401})


def _primary(route: Route) -> str:
    if not route.security:
        return "nobody"
    return PRIMARY_SCHEME.get(route.id, "admin")


@dataclass
class ControllerWrites:
    """The writes the controller accepted, as the fuzzer saw them."""

    versions_created: int = 0
    # The numbers of the versions created, as answered: above every version the fleet
    # reported, so not always one more than the version before.
    created: list[int] = field(default_factory=list)
    poll_interval_seconds: int | None = None
    agents_registered: int = 0
    agents_revoked: int = 0

    def observe(self, response: Any) -> None:
        request = response.request
        write = (request.method, str(request.path_url).split("?")[0], response.status_code)
        if write[0] == "POST" and write[1] in {"/config", "/config/rollback"} and write[2] == 201:
            self.versions_created += 1
            self.created.append(int(response.json()["version"]))
        elif write == ("PUT", "/settings", 200):
            self.poll_interval_seconds = sent_json(response)["poll_interval_seconds"]
        elif write == ("POST", "/register", 201):
            self.agents_registered += 1
        elif write[0] == "DELETE" and write[1].startswith("/agents/") and write[2] == 204:
            self.agents_revoked += 1


@dataclass(frozen=True)
class ControllerState:
    version: int
    poll_interval_seconds: int
    agents: int


def _controller_state(url: str) -> ControllerState:
    def get(path: str) -> requests.Response:
        return requests.get(f"{url}{path}", headers=ADMIN, timeout=REQUEST_TIMEOUT_SECONDS)

    return ControllerState(
        version=int(get("/config").headers["X-Config-Version"]),
        poll_interval_seconds=get("/settings").json()["poll_interval_seconds"],
        agents=get("/agents").json()["total"],
    )


def _fixed_path_parameters(route: Route, controller: FuzzedController) -> list[dict[str, str]]:
    """Path values that name something that exists, beside the generated ones."""
    if "{agent_id}" in route.path:
        return [{"agent_id": controller.register(f"victim-{i}")["agent_id"]} for i in (1, 2)]
    if "{version}" in route.path:
        return [{"version": "0"}]
    return []


def _runs(
    op: Any,
    route: Route,
    credentials: Mapping[str, Mapping[str, str]],
    base: Target,
    path_parameters: list[dict[str, str]],
) -> list[tuple[str, FuzzRun]]:
    """Each mode with each credential: in depth with the route's own, briefly with the rest."""
    runs = []
    primary = _primary(route)
    for mode in MODES:
        for name, headers in credentials.items():
            refusal = _expected_refusal(route, name)
            checks = list(base.checks)
            if refusal is not None:
                # Negative requests may go without the Authorization header: 401 then.
                negative = mode is GenerationMode.NEGATIVE
                checks.append(refused_with(refusal | {401} if negative else refusal))
            elif name == primary and not (
                (mode is GenerationMode.NEGATIVE and route.id in IGNORED_GARBAGE)
                or (mode is GenerationMode.POSITIVE and route.id in UNSTATED_RULES)
            ):
                checks += ACCEPTANCE_CHECKS[mode]
            target = Target(
                base_url=base.base_url, headers=headers, checks=checks, observe=base.observe
            )
            examples = (
                examples_per_operation() if name == primary else examples_per_other_credential()
            )
            run = fuzz(
                op, target, mode=mode, max_examples=examples, path_parameters=path_parameters
            )
            if run.unsatisfiable:
                run = hostile_cases(op, target, mode)
            runs.append((name, run))
    return runs


def _assert_runs(runs: list[tuple[str, FuzzRun]]) -> None:
    unsent = [f"{run.label} [{run.mode.value}] as {name}" for name, run in runs if run.sent == 0]
    assert unsent == [], "no request was sent for these"
    assert "\n\n".join(run.report() for _, run in runs if run.failures) == ""


@pytest.mark.parametrize("route", CONTROLLER_ROUTES, ids=lambda r: r.id)
def test_controller_operation_fuzzed_as_every_role(
    controller: FuzzedController, route: Route
) -> None:
    """Valid and invalid requests, as every role and as nobody, each actually sent: no
    5xx, every answer documented, callers refused as the security says, and the state
    moved only by the writes that were accepted."""
    path_parameters = _fixed_path_parameters(route, controller)
    before = _controller_state(controller.url)
    writes = ControllerWrites(poll_interval_seconds=before.poll_interval_seconds)
    op = operation(load_committed("controller"), f"{route.method} {route.path}")
    base = Target(
        base_url=controller.url, headers={}, checks=CONFORMANCE_CHECKS, observe=writes.observe
    )
    runs = _runs(op, route, controller.credentials(), base, path_parameters)
    _assert_runs(runs)
    after = _controller_state(controller.url)
    if writes.created:
        assert writes.created == sorted(set(writes.created))
        assert writes.created[0] > before.version
        assert after.version == writes.created[-1]
    else:
        assert after.version == before.version
    assert after.poll_interval_seconds == writes.poll_interval_seconds
    # The victims registered for the path parameters count as registered before.
    assert after.agents == before.agents + writes.agents_registered - writes.agents_revoked


@dataclass
class WorkerWrites:
    held_version: int = 0
    held_config: Any = None

    def observe(self, response: Any) -> None:
        request = response.request
        if request.method == "POST" and response.status_code == 200:
            version = int(request.headers["X-Config-Version"])
            if version > self.held_version or "If-Match" in request.headers:
                self.held_version, self.held_config = version, sent_json(response)


def _worker_holds(url: str) -> dict[str, Any]:
    answer = requests.get(f"{url}/config", headers=bearer(WORKER_TOKEN), timeout=10)
    assert answer.status_code == 200, answer.text
    held: dict[str, Any] = answer.json()
    return held


@pytest.mark.parametrize("route", WORKER_ROUTES, ids=lambda r: r.id)
def test_worker_operation_fuzzed(worker: tuple[str, bool], upstream_url: str, route: Route) -> None:
    """The worker, with and without WORKER_TOKEN: no 5xx but GET /hit's documented ones,
    every answer documented, each run sent, and only an accepted POST /config moves
    what it holds."""
    url, secured = worker
    held = _worker_holds(url)
    first = requests.post(
        f"{url}/config",
        json={"url": upstream_url},
        headers={**bearer(WORKER_TOKEN), "X-Config-Version": str(held["version"] + 1)},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert first.status_code == 200, first.text
    writes = WorkerWrites(held_version=held["version"] + 1, held_config={"url": upstream_url})
    credentials = {"worker": bearer(WORKER_TOKEN), "nobody": {}, "garbage": bearer("garbage")}
    op = operation(load_committed("worker"), f"{route.method} {route.path}")
    runs: list[tuple[str, FuzzRun]] = []
    for mode in MODES:
        for name, headers in credentials.items():
            checks = list(CONFORMANCE_CHECKS)
            if secured and route.security and name != "worker":
                checks.append(refused_with(frozenset({401})))
            elif name == "worker" and route.takes_input:
                checks += ACCEPTANCE_CHECKS[mode]
            target = Target(base_url=url, headers=headers, checks=checks, observe=writes.observe)
            examples = (
                examples_per_operation() if name == "worker" else examples_per_other_credential()
            )
            run = fuzz(op, target, mode=mode, max_examples=examples)
            if run.unsatisfiable:
                run = hostile_cases(op, target, mode)
            runs.append((name, run))
    _assert_runs(runs)
    assert _worker_holds(url) == {"version": writes.held_version, "config": writes.held_config}
