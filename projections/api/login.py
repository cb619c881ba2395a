"""POST /auth/login, POST /auth/logout, GET /auth/me: browser sessions over a token.

A browser cannot add an ``Authorization`` header to ``<img>`` or ``<video>`` requests;
after a login it sends an HttpOnly, SameSite=Strict session cookie instead, which carries
the scope of the token it was made with.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException
from litestar.status_codes import HTTP_200_OK
from msgspec import Meta

from projections.api.auth import PUBLIC, Access
from projections.api.errors import error_responses
from projections.api.params import body_operation, decode_body
from projections.api.session import COOKIE

__all__ = ["AuthController", "AuthInfo", "LoggedOut", "Login"]


class Login(msgspec.Struct, forbid_unknown_fields=True):
    """A token to open a browser session with."""

    token: Annotated[str, Meta(min_length=1, max_length=4096, description="An API token.")]


class AuthInfo(msgspec.Struct):
    """What the caller may do."""

    scope: Annotated[str, Meta(description="'read' or 'write' (write includes read).")]
    via: Annotated[
        str,
        Meta(description="'bearer' (Authorization header), 'cookie' (a session) or 'open' "
             "(the API has no token: everyone may write)."),
    ]  # fmt: skip
    name: Annotated[str | None, Meta(description="The token's name (null when open).")] = None
    expires_at: Annotated[
        float | None, Meta(description="Unix time the session ends (sessions only).")
    ] = None


class LoggedOut(msgspec.Struct):
    """The session is over (or there was none)."""

    logged_out: Annotated[bool, Meta(description="Always true.")] = True


def _access(request: Request[Any, Any, Any]) -> Access:
    return request.app.state.access  # type: ignore[no-any-return]


def _cookie(request: Request[Any, Any, Any], access: Access, value: str, max_age: int) -> Cookie:
    secure = access.cookie_secure
    if secure is None:
        secure = request.url.scheme == "https"
    return Cookie(
        key=COOKIE, value=value, path="/", httponly=True, samesite="strict", secure=secure,
        max_age=max_age,
    )  # fmt: skip


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>eventsvc: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: sans-serif; max-width: 24rem; margin: 4rem auto">
<h1>eventsvc</h1>
<form id="f"><label>API token <input id="t" type="password" autocomplete="current-password"
 required autofocus style="width: 100%"></label>
<p><button>Log in</button> <span id="m" role="status"></span></p></form>
<script>
document.getElementById("f").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await fetch("/auth/login", {method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token: document.getElementById("t").value})});
  const body = await r.json();
  if (!r.ok) { document.getElementById("m").textContent = body.detail; return; }
  const next = new URLSearchParams(location.search).get("next") || "/schema/swagger";
  location.assign(next.startsWith("/") && !next.startsWith("//") ? next : "/");
});
</script></body></html>
"""


class AuthController(Controller):
    path = "/auth"
    tags = ("auth",)

    @get(
        "/login",
        opt=PUBLIC,
        media_type=MediaType.HTML,
        summary="The login page",
        description="A form that posts a token to POST /auth/login (for browsers), then "
        "goes to `?next=` (a path of this site) or the API documentation.",
        response_description="An HTML page.",
    )
    async def login_page(self) -> Response[str]:
        return Response(
            _PAGE,
            media_type=MediaType.HTML,
            headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                     "Content-Security-Policy": "frame-ancestors 'none'"},
        )  # fmt: skip

    @post(
        "/login",
        opt=PUBLIC,
        status_code=HTTP_200_OK,
        summary="Open a browser session",
        description="Checks the token and sets an HttpOnly, SameSite=Strict session cookie "
        "with its scope, for media elements and pages that cannot send a bearer header. "
        "When the API has no tokens there is nothing to log in to: the answer says "
        "`via: open` and sets no cookie.",
        responses=error_responses(400),
        operation_class=body_operation("Login"),
    )
    async def login(self, request: Request[Any, Any, Any]) -> Response[AuthInfo]:
        data = await decode_body(request, Login)
        access = _access(request)
        if access.open:
            return Response(AuthInfo(scope="write", via="open"))
        token = access.tokens.match(data.token)
        if token is None:
            raise NotAuthorizedException(detail="invalid token")
        sid, session = access.sessions.create(token.name, token.scope)
        info = AuthInfo(scope=session.scope, via="cookie", name=token.name,
                        expires_at=session.expires_at)  # fmt: skip
        max_age = max(1, int(access.sessions.ttl))
        return Response(info, cookies=[_cookie(request, access, sid, max_age)])

    @post(
        "/logout",
        opt=PUBLIC,
        status_code=HTTP_200_OK,
        summary="End the browser session",
        description="Forgets the session of the cookie (if any) and clears the cookie.",
        responses=error_responses(),
    )
    async def logout(self, request: Request[Any, Any, Any]) -> Response[LoggedOut]:
        access = _access(request)
        sid = request.cookies.get(COOKIE)
        if sid:
            access.sessions.drop(sid)
        return Response(LoggedOut(), cookies=[_cookie(request, access, "", 0)])

    @get(
        "/me",
        summary="Who am I",
        description="The scope of the caller's token or session.",
        responses=error_responses(),
    )
    async def me(self, request: Request[Any, Any, Any]) -> AuthInfo:
        access = _access(request)
        who = access.principal(request)
        expires = None
        if who.via == "cookie":
            session = access.sessions.get(request.cookies.get(COOKIE, ""))
            expires = session.expires_at if session else None
        return AuthInfo(scope=who.scope, via=who.via, name=who.name, expires_at=expires)
