"""Schemathesis, run from code against a service process on loopback, with the committed
OpenAPI document (docs/openapi/) as the oracle, bounded and deterministic example counts,
and every failure collected instead of stopping at the first.

The document is the reviewed contract: the service's own ``/openapi.json`` is compared
with it separately (test_openapi_served.py), so a change to code and document together is
seen in review, and fuzzing never trusts what the service says about itself.

Budget: ``FLEETCONF_FUZZ_EXAMPLES`` examples per operation and generation mode with the
operation's own credential (CI_EXAMPLES by default), and a fifth of that (at least
OTHER_CREDENTIAL_MIN_EXAMPLES) with every other credential.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

OPENAPI_DIR: Final = Path(__file__).resolve().parents[3] / "docs" / "openapi"
CI_EXAMPLES: Final = 10
OTHER_CREDENTIAL_MIN_EXAMPLES: Final = 2
MODES: Final = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
REQUEST_TIMEOUT_SECONDS: Final = 10
PROBLEM_MEDIA_TYPE: Final = "application/problem+json"


def examples_per_operation() -> int:
    """CI_EXAMPLES, or FLEETCONF_FUZZ_EXAMPLES for a deeper local run."""
    return int(os.environ.get("FLEETCONF_FUZZ_EXAMPLES", CI_EXAMPLES))


def examples_per_other_credential() -> int:
    return max(OTHER_CREDENTIAL_MIN_EXAMPLES, examples_per_operation() // 5)


def problem_json_on_errors(ctx: Any, response: Response, case: Any) -> bool | None:
    """Every 4xx and 5xx answer is application/problem+json with the RFC 9457 members."""
    if response.status_code < 400:
        return None
    media_type = response.headers.get("content-type", [""])[0].split(";")[0].strip()
    if media_type != PROBLEM_MEDIA_TYPE:
        raise AssertionError(f"{response.status_code} answered as {media_type!r}, not problem+json")
    body = json.loads(response.content)
    missing = {"type", "title", "status", "detail"} - set(body)
    if missing or body["status"] != response.status_code:
        raise AssertionError(f"problem body {body!r} lacks {sorted(missing)} or a matching status")
    return True


# What every answer must satisfy, whatever was sent.
CONFORMANCE_CHECKS: Final = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    problem_json_on_errors,
]
# Whether the document describes exactly what is accepted: schema-valid data is not
# refused as invalid, schema-violating data is refused.
ACCEPTANCE_CHECKS: Final = {
    GenerationMode.POSITIVE: [positive_data_acceptance],
    GenerationMode.NEGATIVE: [negative_data_rejection],
}
# Answers that refuse valid data for a reason other than its shape.
STATEFUL_REFUSALS: Final = ["401", "403", "404", "409", "412", "429"]

CONFIG: Final = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "3xx", *STATEFUL_REFUSALS]},
        }
    }
)

Observer = Callable[[Response], None]


@dataclass
class FuzzRun:
    """What one operation answered in one mode: how many requests were sent, every
    status seen, and every distinct failure."""

    label: str
    mode: GenerationMode
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    # True when the document leaves nothing to get wrong (no parameter, no body), so
    # schemathesis cannot generate a schema-violating request.
    unsatisfiable: bool = False

    def report(self) -> str:
        return "\n\n".join(f"--- {title}\n{text}" for title, text in self.failures.items())


def load_committed(service: str) -> Any:
    """The committed, reviewed document of ``service`` (controller, worker)."""
    return schemathesis.openapi.from_path(OPENAPI_DIR / f"{service}.json", config=CONFIG)


def operation(schema: Any, label: str) -> Any:
    for result in schema.get_all_operations():
        op = result.ok()
        if op.label == label:
            return op
    raise LookupError(label)


def _title(exc: BaseException) -> str:
    if isinstance(exc, FailureGroup):
        return "; ".join(
            sorted({type(e).__name__ + ": " + str(e).split("\n")[0] for e in exc.exceptions})
        )
    return type(exc).__name__ + ": " + str(exc).split("\n")[0]


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where requests go, as whom, what each answer must satisfy, and who watches them."""

    base_url: str
    headers: Mapping[str, str]
    checks: Sequence[Any]
    observe: Observer | None = None


def send(op: Any, case: Any, target: Target, session: requests.Session, run: FuzzRun) -> None:
    """Send one case, record its status, and record a failure of any check."""
    response = case.call(
        base_url=target.base_url,
        session=session,
        headers=dict(target.headers),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    run.sent += 1
    run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1
    if target.observe is not None:
        target.observe(response)
    try:
        case.validate_response(response, checks=list(target.checks), headers=dict(target.headers))
    except (AssertionError, FailureGroup) as exc:
        title = f"{op.label} [{run.mode.value}] as {_who(target.headers)}: {_title(exc)}"
        run.failures.setdefault(title, str(exc)[:3000])


def _who(headers: Mapping[str, str]) -> str:
    token = headers.get("Authorization")
    return "nobody" if token is None else token[:14] + "..."


def fuzz(
    op: Any,
    target: Target,
    *,
    mode: GenerationMode,
    max_examples: int,
    path_parameters: Sequence[Mapping[str, str]] = (),
) -> FuzzRun:
    """Send up to ``max_examples`` generated requests; record failures, never raise them.
    An operation with nothing to get wrong is marked ``unsatisfiable`` in negative mode,
    and then gets :func:`hostile_cases` instead."""
    run = FuzzRun(op.label, mode)
    strategies = [op.as_strategy(generation_mode=mode)]
    strategies += [
        op.as_strategy(generation_mode=mode, path_parameters=dict(fixed))
        for fixed in path_parameters
    ]
    session = requests.Session()

    @given(case=st.one_of(strategies))
    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
        print_blob=False,
    )
    def one(case: Any) -> None:
        send(op, case, target, session, run)

    try:
        one()
    except Unsatisfiable:
        run.unsatisfiable = True
    finally:
        session.close()
    return run


# Requests that are wrong in what the document cannot describe: an operation without
# parameters or body still meets them (the checks are the conformance ones: refusing
# them is right, and so is ignoring what the operation does not read).
HOSTILE_HEADERS: Final = (
    {"Authorization": "Bearer"},
    {"Authorization": "Basic YWRtaW46YWRtaW4="},
    # Longer header lines (over 8190 bytes) are refused by aiohttp's HTTP parser, before
    # any route: 400 text/plain, outside the document (tests/README.md).
    {"Authorization": "Bearer " + "x" * 4096},
    {"Authorization": "Bearer \u00e9\u00e9\u00e9-not-ascii"},
    {"Authorization": "Bearer a, Bearer b"},
    {"If-None-Match": '"' + "9" * 400 + '"'},
    {"Content-Type": "application/json"},
)
HOSTILE_QUERIES: Final = ({"unexpected": "1"}, {"limit": "5000"}, {"offset": "-1"})


def hostile_cases(op: Any, target: Target, mode: GenerationMode) -> FuzzRun:
    """Hand-made negative cases for an operation schemathesis has nothing to mutate in:
    malformed credentials and headers, unknown query parameters, a stray body."""
    run = FuzzRun(op.label, mode)
    session = requests.Session()
    try:
        for headers in HOSTILE_HEADERS:
            merged = Target(
                base_url=target.base_url,
                headers={**target.headers, **headers},
                checks=target.checks,
                observe=target.observe,
            )
            send(op, op.Case(), merged, session, run)
        for query in HOSTILE_QUERIES:
            send(op, op.Case(query=query), target, session, run)
        send(
            op,
            op.Case(body={"unexpected": "body"}, media_type="application/json"),
            target,
            session,
            run,
        )
    finally:
        session.close()
    return run


def sent_json(response: Response) -> Any:
    body = response.request.body
    if not isinstance(body, bytes | str):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
