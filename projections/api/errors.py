"""Every error answers ``{"detail": "..."}`` naming the cause, with the right status."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR, HTTP_503_SERVICE_UNAVAILABLE

from eventsvc.core.errors import LogError, ReadModelError
from projections.api.redact import redactor_for
from projections.api.schemas import ErrorDetail

__all__ = [
    "ALWAYS",
    "ERROR_DESCRIPTIONS",
    "EXCEPTION_HANDLERS",
    "WRITES",
    "bad_parameter",
    "error_responses",
]

log = logging.getLogger(__name__)


def bad_parameter(name: str, why: str) -> ClientException:
    """A 400 whose detail names the parameter."""
    return ClientException(detail=f"invalid parameter {name!r}: {why}")


ERROR_DESCRIPTIONS = {
    400: "A bad parameter; the detail names it.",
    401: "Missing or wrong bearer token or session (only when the API has a token).",
    403: (
        "A 'read' token or session on a write, a cross-origin write, or (API without a "
        "token) a Host header that is not a loopback name."
    ),
    404: "Not found; the detail says what.",
    415: "A write whose body is not JSON (Content-Type: application/json).",
    503: "The read model exists but cannot be read.",
}
"""The one place error statuses are described; every route's ``responses`` come from it."""
ALWAYS = (401, 403, 503)
"""Statuses any route may answer (``error_responses`` adds them)."""
WRITES = (403, 415)
"""Statuses a write (POST, PATCH, DELETE) may answer besides its own."""


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the ``{"detail"}`` errors a route can answer."""
    return {
        c: ResponseSpec(ErrorDetail, description=ERROR_DESCRIPTIONS[c]) for c in (*codes, *ALWAYS)
    }


def _body(detail: str) -> dict[str, str]:
    return {"detail": detail}


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    # Litestar's default detail is "Validation failed for GET /x?..." with the
    # parameter only in ``extra``; name it in the detail instead.
    parts = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict) and item.get("key"):
            src = item.get("source")
            src = getattr(src, "value", src)  # Litestar gives a ParamType enum
            source = f"{src} " if src else ""
            message = item.get("message") or "invalid value"
            parts.append(f"invalid {source}parameter {item['key']!r}: {message}")
    detail = "; ".join(parts) or exc.detail
    return Response(_body(detail), status_code=400, headers=exc.headers)


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    ctx = request.app.state.get("ctx")
    detail = redactor_for(ctx.settings)(exc.detail) if ctx else exc.detail  # no server paths
    return Response(_body(detail or ""), status_code=exc.status_code, headers=exc.headers)


def _read_model(_: Request[Any, Any, Any], exc: ReadModelError) -> Response[Any]:
    log.warning("read model unavailable: %s", exc)
    return Response(
        _body(f"read model unavailable: {exc}"), status_code=HTTP_503_SERVICE_UNAVAILABLE
    )


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _event_log(request: Request[Any, Any, Any], exc: LogError) -> Response[Any]:
    """The one place NATS trouble (no connection, a publish not acknowledged) becomes
    503: routes call ``ctx.require_log()`` and publish, and let LogError through."""
    log.warning("%s %s: event log unavailable: %s", request.method, request.url.path, exc)
    doing = "cannot record the decision" if request.method in _WRITES else "event log unavailable"
    return Response(_body(f"{doing}: {exc}"), status_code=HTTP_503_SERVICE_UNAVAILABLE)


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return Response(
        _body(f"internal error: {type(exc).__name__}"), status_code=HTTP_500_INTERNAL_SERVER_ERROR
    )


EXCEPTION_HANDLERS = {
    ValidationException: _validation,
    HTTPException: _http,
    ReadModelError: _read_model,
    LogError: _event_log,
    Exception: _internal,
}
