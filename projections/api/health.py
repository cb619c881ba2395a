"""GET /healthz: liveness, open even when a token is set and with no read model. It says
"degraded" (still 200: the process waits and resumes by itself) while NATS is away or a
component waits to restart, since when and why (issue 17 item 1)."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, get

from projections.api.auth import PUBLIC
from projections.api.context import ApiContext, Ctx
from projections.api.schemas import Health
from projections.status import since_text

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
        description="200 while the process runs: 'ok', or 'degraded' (NATS away, a "
        "component waiting to restart) with since when and why.",
    )
    async def healthz(self, ctx: Ctx) -> Health:
        return health_of(ctx)
