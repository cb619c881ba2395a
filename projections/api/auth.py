"""Bearer-token auth: a guard on every route but those marked ``opt={"public": True}``."""

from __future__ import annotations

import secrets
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

__all__ = ["PUBLIC", "token_guard"]

PUBLIC = {"public": True}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def token_guard(token: str) -> Guard:
    expected = token.encode()

    def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get("public"):
            return
        header = connection.headers.get("authorization")
        if not header:
            raise NotAuthorizedException(
                detail="missing 'Authorization: Bearer <token>' header", headers=_CHALLENGE
            )
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            given.strip().encode(), expected
        ):
            raise NotAuthorizedException(detail="invalid bearer token", headers=_CHALLENGE)

    return guard
