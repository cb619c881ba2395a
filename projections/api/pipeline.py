"""GET /pipeline: stream, projector position, durable consumers, recorded failures."""

from __future__ import annotations

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
from projections.api.redact import Redactor, redactor_for
from projections.api.schemas import (
    ConsumerStatus,
    Failure,
    FailureSummary,
    NatsStatus,
    PipelineStatus,
    ProjectorStatus,
    StreamStatus,
)
from projections.status import PipelineState, pipeline_state, since_text

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
    by_operation = {
        f"{r['stage']}:{r['operation']}": r["n"]
        for r in conn.execute(
            "SELECT stage, operation, count(*) AS n FROM failures"
            " GROUP BY stage, operation ORDER BY stage, operation"
        )
    }
    redact = redactor_for(settings, conn)
    recent = [
        Failure(**{**dict(r), "permanent": bool(r["permanent"]), "reason": redact(r["reason"])})
        for r in conn.execute(
            "SELECT seq, stage, operation, reason, permanent, input_subject, deliveries, file_id,"
            " content_hash, library_id, occurred_at FROM failures ORDER BY seq DESC LIMIT ?",
            (RECENT_FAILURES,),
        )
    ]
    summary = FailureSummary(
        total=sum(by_stage.values()), by_stage=by_stage, by_operation=by_operation, recent=recent
    )
    return Path(file).name if file else None, readmodel.checkpoint(conn), summary, redact


def _extra(ctx: ApiContext) -> dict[str, Any] | None:
    if ctx.extra_status is None:
        return None
    try:
        return ctx.extra_status()
    except Exception as exc:  # the host's status must not break ours
        log.warning("extra_status failed: %r", exc)
        return {"error": repr(exc)}


def _stream(state: PipelineState, name: str) -> StreamStatus:
    st = state.stream
    if st is None or not st.exists:
        return StreamStatus(name=name, error=state.stream_error)
    return StreamStatus(
        name=st.name,
        last_seq=st.last_seq,
        messages=st.messages,
        bytes=st.bytes,
        differs=list(st.differs) or None,
    )


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
        empty = (
            None,
            0,
            FailureSummary(total=0, by_stage={}, by_operation={}, recent=[]),
            redactor_for(settings),
        )
        # the checkpoint before the stream: the stream only grows, so lag >= 0
        generation, checkpoint, failures, redact = await db.read(
            settings.readmodel_dir, lambda c: _read_side(c, settings), empty
        )
        state = await pipeline_state(ctx.event_log, (generation, checkpoint), why=ctx.nats_error)
        return PipelineStatus(
            nats=NatsStatus(
                connected=state.connected,
                error=state.nats_error,
                since=since_text(state.connected_since),
            ),
            stream=_stream(state, settings.stream),
            projector=ProjectorStatus(
                generation=generation, checkpoint=checkpoint, lag=state.projector.lag
            ),
            consumers=[
                ConsumerStatus(
                    name=c.name,
                    pending=c.pending,
                    ack_pending=c.ack_pending,
                    redelivered=c.redelivered,
                    last_delivered=c.last_delivered,
                )
                for c in state.consumers
            ],
            consumers_error=state.consumers_error,
            failures=failures,
            extra=redact.tree(_extra(ctx)),
        )
