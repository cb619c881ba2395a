"""Who may do what: scopes from bearer tokens or session cookies, and cross-site refusal.

One guard on every route. Reads (GET, HEAD, OPTIONS) need the ``read`` scope, every other
method ``write``; routes marked ``opt=PUBLIC`` need none. With no token configured every
caller has ``write`` (the API then binds to loopback only, see ``tokens.check_bind``) and
a request must name a loopback host (``Host: localhost:8470``, ``127.0.0.1``, ``[::1]``):
a page whose DNS name was re-bound to 127.0.0.1 gets 403 (DNS rebinding).

Every write, public or not, token or not, must also look like it came from this API's own
pages or a non-browser client:

* an ``Origin`` header, when present, must name this API (its host and port equal the
  ``Host`` header) or one of ``api_allowed_origins``; ``Origin: null`` is refused;
* without ``Origin``, a ``Sec-Fetch-Site`` other than ``same-origin`` or ``none`` is refused;
* a body must be JSON: a ``Content-Type`` other than ``application/json`` (or
  ``application/*+json``), or a body without one, is refused with 415, even on routes
  that take no body. A foreign page can only send such a request after a CORS preflight,
  which this API never grants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE
from litestar.types import Guard

from eventsvc.core.settings import Settings
from projections.api.session import COOKIE, SessionStore
from projections.api.tokens import Scope, TokenSet, is_loopback

__all__ = ["PUBLIC", "SAFE_METHODS", "Access", "Principal", "access_guard"]

PUBLIC = {"public": True}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Principal:
    scope: Scope
    via: Literal["bearer", "cookie", "open"]
    name: str | None = None
    """The token's name (None in the open mode)."""


def _origin(scheme: str, host: str | None, port: int | None) -> str | None:
    if not host or scheme not in _DEFAULT_PORTS:
        return None
    return f"{scheme}://{host.lower()}:{port or _DEFAULT_PORTS[scheme]}"


def normalize_origin(value: str) -> str | None:
    """``scheme://host:port`` with the default port filled in; None if unusable."""
    try:
        parts = urlsplit(value.strip())
        return _origin(parts.scheme.lower(), parts.hostname, parts.port)
    except ValueError:
        return None


class Access:
    """The configured tokens, the live sessions and the cross-site rules of one app."""

    def __init__(self, settings: Settings, tokens: TokenSet) -> None:
        self.tokens = tokens
        self.sessions = SessionStore(settings.api_session_ttl)
        self.cookie_secure = settings.api_cookie_secure
        self.loopback_only = not tokens and is_loopback(settings.api_host)
        """No token and bound to loopback: requests must name a loopback host."""
        self.allowed_origins = frozenset(
            o for o in map(normalize_origin, settings.api_allowed_origins) if o
        )

    @property
    def open(self) -> bool:
        """No token configured: every caller may read and write."""
        return not self.tokens

    def principal(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
        """Who is calling; 401 when a token is needed and none (or a wrong one) is given."""
        if self.open:
            return Principal("write", "open")
        header = connection.headers.get("authorization")
        if header:
            scheme, _, given = header.partition(" ")
            token = self.tokens.match(given.strip()) if scheme.lower() == "bearer" else None
            if token is None:
                raise NotAuthorizedException(detail="invalid bearer token", headers=_CHALLENGE)
            return Principal(token.scope, "bearer", token.name)
        sid = connection.cookies.get(COOKIE)
        if sid:
            session = self.sessions.get(sid)
            if session is None:
                raise NotAuthorizedException(
                    detail="session expired or unknown: log in again (POST /auth/login)",
                    headers=_CHALLENGE,
                )
            return Principal(session.scope, "cookie", session.token_name)
        raise NotAuthorizedException(
            detail="missing 'Authorization: Bearer <token>' header (or a session cookie "
            "from POST /auth/login)",
            headers=_CHALLENGE,
        )

    def check_host(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        """Open and on loopback: answer loopback names only, so that a web page whose name
        was re-bound to 127.0.0.1 (DNS rebinding) reads nothing."""
        host = connection.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if is_loopback(name) or name.lower().endswith(".localhost"):
            return
        raise PermissionDeniedException(
            detail=f"this API has no token and answers loopback names only (localhost, "
            f"127.0.0.1, [::1]), not Host {host!r}: set a token to serve other names"
        )

    def check_same_origin(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        """403 for a write that a foreign web page sent."""
        headers = connection.headers
        origin = headers.get("origin")
        if origin is not None:
            given = normalize_origin(origin)
            if given is not None and given in (*self.allowed_origins, _own(connection, given)):
                return
            raise PermissionDeniedException(
                detail=f"cross-origin write refused: Origin {origin!r} is not this API "
                "(add it to EVENTSVC_API_ALLOWED_ORIGINS to allow it)"
            )
        site = headers.get("sec-fetch-site")
        if site is not None and site.lower() not in ("same-origin", "none"):
            raise PermissionDeniedException(
                detail=f"cross-site write refused (Sec-Fetch-Site: {site})"
            )


def _own(connection: ASGIConnection[Any, Any, Any, Any], given: str) -> str | None:
    """This API's origin as the caller addressed it (Host header), in the scheme of ``given``.

    The scheme is the Origin's: behind a TLS proxy the API itself sees plain http."""
    host = connection.headers.get("host")
    if not host:
        return None
    scheme = given.split(":", 1)[0]
    return normalize_origin(f"{scheme}://{host}")


def check_json_body(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """415 for a write whose body is not declared JSON (forms and text/plain included)."""
    headers = connection.headers
    ctype = headers.get("content-type")
    if ctype is None:
        length = headers.get("content-length")
        if (length is not None and length.strip() != "0") or "transfer-encoding" in headers:
            raise HTTPException(
                status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                detail="a request body needs 'Content-Type: application/json'",
            )
        return
    media = ctype.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media[-5:] == "+json"):
        return
    raise HTTPException(
        status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        detail=f"writes take 'application/json' only, not {media or ctype!r}",
    )


def access_guard(access: Access) -> Guard:
    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        method = str(connection.scope.get("method", "GET")).upper()
        writing = method not in SAFE_METHODS
        if access.loopback_only:
            access.check_host(connection)
        if not handler.opt.get("public"):
            who = access.principal(connection)
            if writing and who.scope != "write":
                raise PermissionDeniedException(
                    detail=f"the {who.scope!r} scope may not {method}: a 'write' token is needed"
                )
        if writing:
            access.check_same_origin(connection)
            check_json_body(connection)

    return guard
