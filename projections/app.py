"""The read side's whole HTTP app: the JSON API (:mod:`projections.api`) with the web
pages (:mod:`projections.web`) mounted beside it, in one Litestar app and process."""

from __future__ import annotations

from typing import Any

from litestar import Litestar

from eventsvc.core.settings import Settings
from projections import web
from projections.api import create_api

__all__ = ["create_app"]


def create_app(settings: Settings, **kwargs: Any) -> Litestar:
    """The API with the web app's pages at ``/`` and their files at ``/web/static``;
    keyword arguments as :func:`projections.api.app.create_api`."""
    return create_api(
        settings, pages=web.route_handlers(), template_config=web.template_config(), **kwargs
    )
