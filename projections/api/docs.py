"""The OpenAPI document's configuration, its browsable pages (Swagger UI, ReDoc) served
from files inside the package (no CDN: they work offline), and complete ``Allow``
headers on OPTIONS answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import (
    JsonRenderPlugin,
    RedocRenderPlugin,
    SwaggerRenderPlugin,
    YamlRenderPlugin,
)
from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.types import Message, Scope

__all__ = ["STATIC_DIR", "STATIC_PATH", "fix_allow", "openapi_config", "static_router"]

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/static"
_VENDOR = f"{STATIC_PATH}/vendor"
_FAVICON = f"<link rel='icon' type='image/png' href='{_VENDOR}/swagger-ui/favicon-32x32.png'>"


def openapi_config() -> OpenAPIConfig:
    """``/schema`` (ReDoc), ``/schema/redoc``, ``/schema/swagger``, ``/schema/openapi.json``
    and ``/schema/openapi.yaml``; the pages load their scripts from :data:`STATIC_PATH`."""
    return OpenAPIConfig(
        title="eventsvc",
        version="0.1.0",
        description="Read side of the eventsvc photo and video index. Every error answers "
        '`{"detail": "..."}` naming the cause.',
        path="/schema",
        render_plugins=[
            RedocRenderPlugin(
                path=["/", "/redoc"], js_url=f"{_VENDOR}/redoc/redoc.standalone.js",
                google_fonts=False, favicon=_FAVICON,
            ),
            SwaggerRenderPlugin(
                js_url=f"{_VENDOR}/swagger-ui/swagger-ui-bundle.js",
                css_url=f"{_VENDOR}/swagger-ui/swagger-ui.css",
                standalone_preset_js_url=f"{_VENDOR}/swagger-ui/swagger-ui-standalone-preset.js",
                favicon=_FAVICON,
            ),
            JsonRenderPlugin(),
            YamlRenderPlugin(path=["/openapi.yaml", "/openapi.yml"]),
        ],
    )  # fmt: skip


def static_router(opt: dict[str, Any]) -> Router:
    """The package's static files (the vendored documentation assets) at STATIC_PATH."""
    return create_static_files_router(
        path=STATIC_PATH, directories=[STATIC_DIR], opt=opt, include_in_schema=False,
        cache_control=None,
    )  # fmt: skip


async def fix_allow(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook: OPTIONS answers list every method of the path.

    Litestar 2.25 builds a path's OPTIONS handler with the methods of the first
    handlers registered for it, so GET + PATCH on one path answered ``Allow: GET,
    OPTIONS``. (Its 405 answers list them all already.)
    """
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    app: Litestar = scope["app"]  # type: ignore[assignment]
    methods: set[str] = set()
    for path in getattr(scope.get("route_handler"), "paths", ()):
        methods.update(app.route_handler_method_map.get(path, {}))
    if not methods:
        return
    allow = ", ".join(sorted(methods | {"OPTIONS"})).encode()
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
    message["headers"] = [*headers, (b"allow", allow)]  # type: ignore[typeddict-unknown-key]
