"""GET /pipeline: stream, projector position, durable consumers, recorded failures."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

from litestar import Controller, get

from eventsvc.core.settings import Settings
from projections import readmodel
from projections.api import db
from projections.api.context import ApiContext, Ctx
from projections.api.errors import error_responses
from projections.api.nats_status import consumer_statuses, stream_status
from projections.api.redact import Redactor, redactor_for
from projections.api.schemas import (
    Failure,
    FailureSummary,
    NatsStatus,
    PipelineStatus,
    ProjectorStatus,
)

__all__ = ["RECENT_FAILURES", "PipelineController"]

log = logging.getLogger(__name__)

RECENT_FAILURES = 20


def _read_side(
    conn: sqlite3.Connection, settings: Settings
) -> tuple[str | None, int, FailureSummary, Redactor]:
    file = conn.execute("PRAGMA database_list").fetchone()["file"]
    by_stage = {
        r["stage"]: r["n"]
        for r in conn.execute(
            "SELECT stage, count(*) AS n FROM failures GROUP BY stage ORDER BY stage"
        )
    }
    redact = redactor_for(settings, conn)
    recent = [
        Failure(**{**dict(r), "permanent": bool(r["permanent"]), "reason": redact(r["reason"])})
        for r in conn.execute(
            "SELECT seq, stage, reason, permanent, input_subject, deliveries, file_id,"
            " content_hash, library_id, occurred_at FROM failures ORDER BY seq DESC LIMIT ?",
            (RECENT_FAILURES,),
        )
    ]
    summary = FailureSummary(total=sum(by_stage.values()), by_stage=by_stage, recent=recent)
    return Path(file).name if file else None, readmodel.checkpoint(conn), summary, redact


def _extra(ctx: ApiContext) -> dict[str, Any] | None:
    if ctx.extra_status is None:
        return None
    try:
        return ctx.extra_status()
    except Exception as exc:  # the host's status must not break ours
        log.warning("extra_status failed: %r", exc)
        return {"error": repr(exc)}


class PipelineController(Controller):
    path = "/pipeline"
    tags = ("pipeline",)

    @get(
        "/",
        summary="Pipeline status",
        description="Event stream, read-model position and lag, durable consumers and "
        "recorded derivation failures. NATS trouble is reported in the body, not as an error.",
        responses=error_responses(),
    )
    async def pipeline(self, ctx: Ctx) -> PipelineStatus:
        settings = ctx.settings
        empty = (None, 0, FailureSummary(total=0, by_stage={}, recent=[]), redactor_for(settings))
        (generation, checkpoint, failures, redact), stream, consumers = await asyncio.gather(
            db.read(settings.readmodel_dir, lambda c: _read_side(c, settings), empty),
            stream_status(ctx.event_log, settings.stream, ctx.nats_error),
            consumer_statuses(ctx.event_log, settings.stream),
        )
        lag = stream.last_seq - checkpoint if stream.last_seq is not None else None
        connected = ctx.event_log is not None and ctx.event_log.nc.is_connected
        nats = NatsStatus(
            connected=connected,
            error=None if connected else (ctx.nats_error or "NATS connection lost"),
        )
        return PipelineStatus(
            nats=nats,
            stream=stream,
            projector=ProjectorStatus(generation=generation, checkpoint=checkpoint, lag=lag),
            consumers=consumers,
            failures=failures,
            extra=redact.tree(_extra(ctx)),
        )
