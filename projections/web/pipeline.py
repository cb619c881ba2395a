"""``/web/pipeline``: libraries (online or stale and why, counts, last scan, file watching)
and the pipeline (NATS, stream, projector lag, pending per consumer, workers, recent
failures with their reasons), updated live.

The page is a frame; ``static/pipeline.js`` fills it from ``GET /libraries`` and
``GET /pipeline`` at once and then every :data:`REFRESH_S` seconds (polling: the JSON the
operators' tools read, no second source of truth).
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get
from litestar.response import Template

from projections.web.common import page

__all__ = ["REFRESH_S", "PipelinePages"]

REFRESH_S = 3
"""Seconds between two refreshes of the page's figures."""


class PipelinePages(Controller):
    path = "/web/pipeline"
    include_in_schema = False

    @get("/", name="web-pipeline")
    async def pipeline(self, request: Request[Any, Any, Any]) -> Template:
        return page(request, "pipeline.html", "pipeline", refresh_s=REFRESH_S)
