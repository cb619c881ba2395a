"""GET /healthz: liveness, open even when a token is set and with no read model.

Always 200 while the process runs (it waits and resumes by itself); ``status`` is
"degraded", with since when and why, while a component of this process waits to restart
or its NATS connection is away (issue 17 item 1), or the pipeline behind it does not work:
no NATS connection, or a clustered stream without quorum (the same status service as
/pipeline, bounded in time; item 4). An API run without any NATS URL (read-only, on a
copied read model) has no pipeline behind it."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, get

from projections.api.auth import PUBLIC
from projections.api.context import ApiContext, Ctx
from projections.api.schemas import Health
from projections.status import pipeline_state, since_text

__all__ = ["HealthController"]


def health_of(ctx: ApiContext) -> Health:
    state: dict[str, Any] = {}
    if ctx.extra_status is not None:
        try:
            state = dict(ctx.extra_status().get("health") or {})
        except Exception:  # the host's status must not break liveness
            state = {}
    reasons = list(state.get("reasons") or [])
    since = state.get("since")
    lg = ctx.event_log
    if not state and lg is not None and not lg.connected:  # a lone API: its own connection
        reasons.append("api: NATS connection lost; reconnecting")
        since = lg.disconnected_since or time.time()
    if not reasons:
        return Health(status="ok")
    return Health(status="degraded", since=since_text(since), reasons=reasons)


class HealthController(Controller):
    path = "/healthz"
    tags = ("health",)

    @get(
        "/",
        opt=PUBLIC,
        summary="Liveness",
        description="Always 200 while the process runs: 'ok', or 'degraded' (NATS away, a "
        "component waiting to restart, a stream without quorum) with since when and why.",
    )
    async def healthz(self, ctx: Ctx) -> Health:
        own = health_of(ctx)  # this process's components
        if ctx.event_log is None and not ctx.settings.nats_url:
            return own  # a read-only API: no pipeline behind it to judge
        state = await pipeline_state(ctx.event_log, (None, 0), why=ctx.nats_error, timeout=1.0)
        if not state.problems:
            return own
        since = state.quorum_lost_since
        if since is None and not state.connected:
            since = getattr(ctx.event_log, "disconnected_since", None)
        reasons = [*own.reasons, *(p for p in state.problems if p not in own.reasons)]
        return Health(status="degraded", since=own.since or since_text(since), reasons=reasons)
