"""Schemathesis, run from code against a service on loopback, with bounded and
deterministic example counts, collecting every failure instead of stopping at the first.

Runs in a thread (``asyncio.to_thread``): schemathesis' transport is synchronous
(``requests``), while the service under test is served by the test's event loop.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# What every answer must satisfy, whatever was sent.
CONFORMANCE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    ignored_auth,
]
# Whether the document describes exactly what is accepted: schema-valid data is not
# refused as invalid, schema-violating data is refused.
ACCEPTANCE_CHECKS = {
    GenerationMode.POSITIVE: [positive_data_acceptance],
    GenerationMode.NEGATIVE: [negative_data_rejection],
}
# Answers that refuse valid data for a reason other than its shape.
STATEFUL_REFUSALS = ["401", "403", "404", "409", "412", "429"]
REQUEST_TIMEOUT_SECONDS = 10

CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "3xx", *STATEFUL_REFUSALS]},
        }
    }
)

Observer = Callable[[Response], None]


@dataclass
class FuzzRun:
    """What one operation answered: every response seen, and every distinct failure."""

    label: str
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def report(self) -> str:
        return "\n\n".join(f"--- {title}\n{text}" for title, text in self.failures.items())


def load_schema(base_url: str) -> Any:
    """The service's own /openapi.json, as it serves it."""
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=CONFIG)


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


def fuzz(
    op: Any,
    *,
    base_url: str,
    mode: GenerationMode,
    headers: Mapping[str, str],
    checks: Sequence[Any],
    max_examples: int,
    path_parameters: Sequence[Mapping[str, str]] = (),
    observe: Observer | None = None,
    run: FuzzRun | None = None,
) -> FuzzRun:
    """Send up to ``max_examples`` generated requests; record failures, never raise them."""
    run = run or FuzzRun(op.label)
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
        response = case.call(
            base_url=base_url,
            session=session,
            headers=dict(headers),
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1
        if observe is not None:
            observe(response)
        try:
            case.validate_response(response, checks=list(checks), headers=dict(headers))
        except (AssertionError, FailureGroup) as exc:
            run.failures.setdefault(f"{op.label} [{mode.value}] {_title(exc)}", str(exc)[:3000])

    try:
        one()
    except Unsatisfiable:
        # Nothing in the operation can be made schema-violating (no parameters, no body).
        pass
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
