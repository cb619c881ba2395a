"""The web app: server-rendered pages (Jinja) over the read model, at ``/``.

Read side only: imports ``eventsvc.core`` and ``projections.*``. ``create_app`` mounts
:func:`route_handlers` and :func:`template_config`. Each page area is its own module
with its own templates; add a new area's controller to :data:`PAGES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from projections.api.auth import PUBLIC
from projections.web import (
    duplicates,
    login,
    memories,
    people,
    photo,
    pipeline,
    search,
    timeline,
)
from projections.web.common import LoginRequired, login_redirect, page_guard
from projections.web.render import environment

try:  # litestar >= 2.22
    from litestar.plugins.jinja import JinjaTemplateEngine
except ImportError:  # pragma: no cover - older litestar
    from litestar.contrib.jinja import JinjaTemplateEngine

__all__ = ["PAGES", "STATIC_DIR", "STATIC_PATH", "TEMPLATES_DIR", "route_handlers",
           "template_config"]  # fmt: skip

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
STATIC_PATH = "/web/static"

PAGES: list[Any] = [
    timeline.TimelinePages,
    photo.PhotoPages,
    search.SearchPages,
    people.PeoplePages,
    duplicates.DuplicatePages,
    pipeline.PipelinePages,
    memories.MemoriesPages,
]
"""Controllers of the pages that need a login (``page_guard``)."""


def route_handlers() -> list[Any]:
    """The pages (behind the login gate), the login page and the static files."""
    pages = Router(
        path="/",
        route_handlers=PAGES,
        guards=[page_guard],
        opt=PUBLIC,  # the API guard's scope check is replaced by page_guard's redirect
        exception_handlers={LoginRequired: login_redirect},
        include_in_schema=False,
    )
    static = create_static_files_router(
        path=STATIC_PATH, directories=[STATIC_DIR], opt=PUBLIC, include_in_schema=False,
        cache_control=None, name="web-static",
    )  # fmt: skip
    return [pages, login.LoginPage, static]


def template_config() -> TemplateConfig[Any]:
    return TemplateConfig(engine=JinjaTemplateEngine.from_environment(environment(TEMPLATES_DIR)))
