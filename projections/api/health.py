"""GET /healthz: liveness, open even when a token is set and with no read model."""

from __future__ import annotations

from litestar import Controller, get

from projections.api.auth import PUBLIC
from projections.api.schemas import Health

__all__ = ["HealthController"]


class HealthController(Controller):
    path = "/healthz"
    tags = ("health",)

    @get("/", opt=PUBLIC, summary="Liveness", description="Always 200 while the process runs.")
    async def healthz(self) -> Health:
        return Health(status="ok")
