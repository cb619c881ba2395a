"""What every page shares: the login gate, the security headers, the template context.

Pages are GET routes marked ``opt=PUBLIC`` for the API's guard (which still applies the
loopback Host rule of an open API), and guarded here instead: with tokens configured
and no valid session (or bearer token), a page redirects to ``/login?next=...``
rather than answering 401 JSON. A page never writes; the browser's JavaScript writes
through the JSON API with the session cookie, so the API's own scope and cross-site
rules apply to every action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect, Template

from projections.api.auth import Access, Principal

__all__ = [
    "CSP",
    "NAV",
    "PAGE_HEADERS",
    "LoginRequired",
    "login_redirect",
    "page",
    "page_guard",
    "principal",
]

CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""Everything from this origin only (scripts and styles from files: no inline code)."""

PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

NAV: list[tuple[str, str, str]] = [
    ("timeline", "Timeline", "/"),
    ("search", "Search", "/search"),
    ("memories", "Memories", "/web/memories"),
    ("people", "People", "/web/people"),
    ("duplicates", "Duplicates", "/web/duplicates"),
    ("pipeline", "Libraries & pipeline", "/web/pipeline"),
]
"""(key, label, path) of the navigation. People, duplicates and pipeline pages live
under ``/web/``: ``/people``, ``/duplicates`` and ``/pipeline`` are the JSON API's."""


class LoginRequired(Exception):
    """A page was asked for without a valid session while tokens are configured."""


def _access(connection: ASGIConnection[Any, Any, Any, Any]) -> Access:
    return connection.app.state.access  # type: ignore[no-any-return]


def page_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Pages need the ``read`` scope (every token has it): who is asking is kept in the
    request state for the templates."""
    try:
        who = _access(connection).principal(connection)
    except NotAuthorizedException as exc:
        raise LoginRequired from exc
    connection.state.principal = who


def principal(request: Request[Any, Any, Any]) -> Principal:
    return request.state.principal  # type: ignore[no-any-return]


def login_redirect(request: Request[Any, Any, Any], _: LoginRequired) -> Response[Any]:
    if request.headers.get("hx-request"):
        # A fragment (scroll page, months) of a page whose session ended: the whole page
        # goes to the login, back to where the browser is now.
        here = request.headers.get("hx-current-url") or "/"
        target = urlsplit(here).path + (f"?{urlsplit(here).query}" if urlsplit(here).query else "")
        return Response(
            "", status_code=200, headers={"HX-Redirect": f"/login?next={quote(target, safe='')}"}
        )
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(f"/login?next={quote(target, safe='')}", status_code=303)


@dataclass(frozen=True, slots=True)
class Viewer:
    """What a template knows about the visitor."""

    can_write: bool
    logged_in: bool
    """A session (cookie) exists: a logout link is shown."""
    tokens: bool
    """Tokens are configured: login/logout links make sense."""
    name: str | None


def viewer(request: Request[Any, Any, Any]) -> Viewer:
    who: Principal | None = getattr(request.state, "principal", None)
    access = _access(request)
    return Viewer(
        can_write=who is not None and who.scope == "write",
        logged_in=who is not None and who.via == "cookie",
        tokens=not access.open,
        name=who.name if who is not None else None,
    )


def page(
    request: Request[Any, Any, Any], template: str, active: str, status_code: int = 200,
    **context: Any,
) -> Template:  # fmt: skip
    """Render ``template`` with the shared context (navigation, viewer) and headers."""
    return Template(
        template_name=template,
        context={"nav": NAV, "active": active, "viewer": viewer(request), **context},
        headers=PAGE_HEADERS,
        status_code=status_code,
    )
