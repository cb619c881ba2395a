"""GET /healthz: liveness, open even when a token is set and with no read model.

Always 200 while the process runs; ``status`` is "degraded" (with ``problems``) while the
pipeline behind it does not work: no NATS connection, or a clustered stream without quorum
(the same status service as /pipeline, bounded in time). An API run without any NATS
URL (read-only, on a copied read model) has no pipeline behind it: "ok"."""

from __future__ import annotations

from litestar import Controller, get

from projections.api.auth import PUBLIC
from projections.api.context import Ctx
from projections.api.schemas import Health
from projections.status import pipeline_state, since_text

__all__ = ["HealthController"]


class HealthController(Controller):
    path = "/healthz"
    tags = ("health",)

    @get(
        "/",
        opt=PUBLIC,
        summary="Liveness",
        description="Always 200 while the process runs; status 'degraded' with the problems "
        "while NATS is unreachable or the stream has no quorum.",
    )
    async def healthz(self, ctx: Ctx) -> Health:
        if ctx.event_log is None and not ctx.settings.nats_url:
            return Health(status="ok")  # a read-only API: no pipeline behind it to judge
        state = await pipeline_state(ctx.event_log, (None, 0), why=ctx.nats_error, timeout=1.0)
        if not state.problems:
            return Health(status="ok")
        since = state.quorum_lost_since
        if since is None and not state.connected:
            since = getattr(ctx.event_log, "disconnected_since", None)
        return Health(status="degraded", since=since_text(since), reasons=state.problems)
