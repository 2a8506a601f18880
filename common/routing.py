"""The aiohttp routes of a service's :class:`common.openapi.Operation` list: each behind
its guard (when it has roles), refusing a query parameter it does not declare, and
answering its errors as problem+json."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, cast

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from common.http import refuse_query
from common.openapi import GuardedHandler, Operation
from common.problem import meet_expectation, problem_handler


class Guard(Protocol):
    """Admits a request for one of ``roles``: returns its principal, or raises (401, 403).

    A plain function returning the awaitable keeps the guarded path one call short.
    """

    def __call__(self, request: web.Request, roles: tuple[Any, ...], /) -> Awaitable[Any]: ...


class FastGuard(Protocol):
    """Admits, from memory and without a coroutine, the request most calls are (an agent
    recently verified, say): its principal; None leaves the decision to the Guard."""

    def __call__(self, request: web.Request, roles: tuple[Any, ...], /) -> Any | None: ...


def takes_query(op: Operation) -> bool:
    """Whether ``op`` declares a query parameter; one that does not refuses any."""
    return any(parameter.location == "query" for parameter in op.parameters)


def _guarded(op: Operation, guard: Guard, fast_guard: FastGuard | None) -> Handler:
    # An operation with roles has a GuardedHandler (see Operation).
    handler = cast(GuardedHandler, op.handler)
    roles, on_refused = op.roles, op.on_refused
    check_query = not takes_query(op)

    async def admit_then_handle(request: web.Request) -> web.StreamResponse:
        principal = None if fast_guard is None else fast_guard(request, roles)
        if principal is None:
            try:
                principal = await guard(request, roles)
            except Exception:
                if on_refused is not None:
                    on_refused(request)
                raise
        # After the credential: an anonymous caller learns nothing of the operation.
        if check_query and request.rel_url.raw_query_string:
            refuse_query(request)
        return await handler(request, principal)

    return admit_then_handle


def _without_query(handler: Handler) -> Handler:
    async def refuse_query_then_handle(request: web.Request) -> web.StreamResponse:
        if request.rel_url.raw_query_string:
            refuse_query(request)
        return await handler(request)

    return refuse_query_then_handle


def add_operations(
    app: web.Application,
    operations: Sequence[Operation],
    *,
    guard: Guard | None = None,
    fast_guard: FastGuard | None = None,
) -> None:
    """Route each operation; ``guard`` admits the callers of those with roles (after
    ``fast_guard``, when given, found no principal in memory); errors are answered as
    problem+json."""
    for op in operations:
        if not op.roles:
            # An operation without roles has a plain Handler (see Operation).
            handler = cast(Handler, op.handler)
            if not takes_query(op):
                handler = _without_query(handler)
        elif guard is None:
            raise ValueError(f"{op.operation_id} declares roles, and no guard was given")
        else:
            handler = _guarded(op, guard, fast_guard)
        if op.outer is not None:
            handler = op.outer(handler)
        if op.method == hdrs.METH_GET:  # HEAD with it, as HTTP asks of every GET resource
            app.router.add_get(
                op.path,
                problem_handler(handler),
                name=op.operation_id,
                expect_handler=meet_expectation,
            )
        else:
            app.router.add_route(
                op.method,
                op.path,
                problem_handler(handler),
                name=op.operation_id,
                expect_handler=meet_expectation,
            )
