"""The OpenAPI 3.1 document served at ``/v1/openapi.json``, built from the app's own routes.

One operation per route the app serves (extensions' routes included), each
written from the handler's ``Spec`` (``ledger.api.spec``) and its roles
(``@require``, as ``x-roles``; a public route has ``security: []``). The
errors the middlewares answer for any such route are added here, from what
the route is: behind a role, 401, 403 and 503 (the key is looked up in the
database); with a body, 400, 408 and 413. ``spec_problems`` names a route
without a spec, or whose path parameters and spec disagree; ``create_app``
refuses to build such an app.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, Final

from aiohttp import web

from ledger.api.auth import require, roles_of
from ledger.api.context import BODY_BYTES_MAX
from ledger.api.responses import json_response
from ledger.api.spec import COMPONENTS, Reply, Spec, ref, spec, spec_of

__all__ = [
    "OPENAPI_DOCUMENT",
    "get_openapi",
    "get_public_openapi",
    "openapi_document",
    "served",
    "spec_problems",
]

Route = tuple[str, str, Callable[..., Any]]

#: Holds the document once built: an app's routes are fixed once it serves.
OPENAPI_DOCUMENT: Final = web.AppKey("openapi_document", dict)

_ERROR_TEXT: Final = {
    400: "bad request (an unreadable body, say)",
    401: "no or bad credentials",
    403: "role may not",
    404: "not found",
    408: "the body did not arrive in time (OMNILEDGER_HTTP_BODY_TIMEOUT_S)",
    409: "conflict",
    413: f"body over {BODY_BYTES_MAX // (1024 * 1024)} MiB",
    422: "a rule or a field is violated (duplicate_key: a JSON object names a key twice)",
    429: "too many as-of reads at once; Retry-After",
    503: "database unavailable, or the connection cap reached; Retry-After",
}
_PATH_PARAM: Final = re.compile(r"\{([^}:]+)")


def served(app: web.Application) -> list[Route]:
    """``(method, path, handler)`` of every route ``app`` serves, in the order added."""
    routes = []
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            # a sub-application serves pages, not the API (dasbor/ under /dasbor/)
            continue
        for route in resource:
            if route.method == "HEAD":  # aiohttp adds HEAD to every GET
                continue
            routes.append((route.method, resource.canonical, route.handler))
    return routes


def spec_problems(app: web.Application) -> list[str]:
    """What keeps the document from describing ``app`` exactly; empty when nothing does."""
    problems = []
    for method, path, handler in served(app):
        found = spec_of(handler)
        if found is None:
            problems.append(f"{method} {path}: no spec (@spec beside the handler)")
            continue
        in_path = _PATH_PARAM.findall(path)
        declared = [p.name for p in found.params if p.where == "path"]
        if sorted(in_path) != sorted(declared):
            problems.append(f"{method} {path}: path parameters {declared} in its spec")
        for status in found.errors:
            if status not in _ERROR_TEXT:
                problems.append(f"{method} {path}: no text for error status {status}")
    return problems


def openapi_document(app: web.Application) -> dict[str, Any]:
    cached = app.get(OPENAPI_DOCUMENT)
    if cached is None:
        return build_document(served(app))
    if not cached:
        cached.update(build_document(served(app)))
    return cached


def build_document(routes: Iterable[Route]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for method, path, handler in routes:
        found = spec_of(handler)
        if found is None:
            raise ValueError(f"{method} {path} has no spec")
        paths.setdefault(path, {})[method.lower()] = _operation(handler, found)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Omni-Ledger",
            "version": "1.0.0",
            "description": "Event-sourced transaction ledger (CONTRACT v1). Built from the"
            " routes the server serves: x-roles names the key roles an operation admits.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": COMPONENTS,
        },
    }


def _operation(handler: Callable[..., Any], found: Spec) -> dict[str, Any]:
    roles = roles_of(handler)
    op: dict[str, Any] = {"operationId": handler.__name__, "summary": found.summary}
    description = found.description
    errors = set(found.errors)
    if roles is None:
        op["security"] = []
    else:
        op["x-roles"] = sorted(roles)
        description = f"{description}\n\nRoles: {', '.join(sorted(roles))}.".strip()
        errors |= {400, 401, 403, 503}  # 400: any LedgerError the table does not place
    if description:
        op["description"] = description
    if found.params:
        op["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required, "schema": p.schema}
            | ({"description": p.description} if p.description else {})
            for p in found.params
        ]
    if found.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {found.body_media: {"schema": found.body}},
        }
        errors |= {400, 408, 413}
    responses = {str(status): _reply(reply) for status, reply in sorted(found.replies.items())}
    for status in sorted(errors):
        responses.setdefault(str(status), _reply(Reply(ref("Error"), _ERROR_TEXT[status])))
    op["responses"] = responses
    return op


def _reply(reply: Reply) -> dict[str, Any]:
    media: dict[str, Any] = {} if reply.schema is None else {"schema": reply.schema}
    return {"description": reply.description, "content": {reply.media: media}}


@spec(
    "This document",
    {
        200: {
            "type": "object",
            "required": ["openapi", "info", "paths", "components"],
            "description": "OpenAPI 3.1",
        }
    },
)
@require("admin", "auditor", "gateway", "seller")
async def get_openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app))


@spec(
    "This document, without a key: the public contract",
    {
        200: {
            "type": "object",
            "required": ["openapi", "info", "paths", "components"],
            "description": "OpenAPI 3.1, the same as /v1/openapi.json",
        }
    },
)
async def get_public_openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app))
