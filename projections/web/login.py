"""``GET /login``: the login form of the web app (it posts the token to the JSON
``POST /auth/login`` from app.js, which sets the session cookie), then goes to ``next``."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.params import Parameter
from litestar.response import Redirect, Template

from projections.api.auth import PUBLIC, Access
from projections.web.common import page

__all__ = ["LoginPage", "safe_next"]


def safe_next(value: str | None) -> str:
    """A path of this site to go to after logging in ("/" for anything else)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


class LoginPage(Controller):
    path = "/login"
    include_in_schema = False

    @get("/", opt=PUBLIC, name="web-login")
    async def login(
        self, request: Request[Any, Any, Any],
        next: Annotated[str | None, Parameter(description="Where to go after.")] = None,
    ) -> Template | Redirect:  # fmt: skip
        access: Access = request.app.state.access
        target = safe_next(next)
        if access.open:  # nothing to log in to
            return Redirect(target, status_code=303)
        return page(request, "login.html", "login", next=target)
