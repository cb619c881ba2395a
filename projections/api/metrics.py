"""GET /metrics: Prometheus text format (issue 14), from this process's registry.

Per scrape, before the registry is written out, the read side's numbers are taken:
libraries (files, images, videos, bytes, health) and playlist states from the read model,
recorded failures per stage and operation, and from the status service
(:mod:`projections.status`) the durable consumers (pending, ack pending, redelivered),
the stream and the projector's
checkpoint and lag. Requests are timed by route template (``/photos/{photo_id:str}``,
never the raw path) in :func:`request_timer`. In ``eventsvc up`` the same registry holds
the workers', scanner's and projector's instruments (:mod:`eventsvc.core.metrics`).

Access: the ``read`` scope like every other read, except a client on loopback when
``metrics_open_on_loopback`` (None: when the API binds loopback) lets it scrape without one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from litestar import Request, get
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventsvc.core.metrics import ProcessMetrics
from eventsvc.core.settings import Settings
from projections import readmodel
from projections.api import db
from projections.api.auth import PUBLIC, Access
from projections.api.context import ApiContext
from projections.api.tokens import is_loopback
from projections.status import PipelineState, pipeline_state

__all__ = ["ApiMetrics", "metrics_endpoint", "open_on_loopback", "request_timer"]

_LIBRARIES = """
SELECT l.library_id, l.state,
       coalesce(s.files, 0) AS files, coalesce(s.images, 0) AS images,
       coalesce(s.videos, 0) AS videos, coalesce(s.bytes, 0) AS bytes
FROM libraries AS l
LEFT JOIN (
    SELECT library_id, count(*) AS files,
           sum(media_kind = 'image') AS images, sum(media_kind = 'video') AS videos,
           sum(size) AS bytes
    FROM files GROUP BY library_id
) AS s USING (library_id)
ORDER BY l.library_id
"""

_PLAYLISTS = """
WITH videos AS (
    SELECT DISTINCT content_hash FROM files
    WHERE media_kind = 'video' AND content_hash IS NOT NULL
),
failed AS (SELECT DISTINCT content_hash FROM failures WHERE stage = 'playlist')
SELECT CASE
         WHEN p.mode IS NOT NULL THEN p.mode
         WHEN v.content_hash IN (SELECT content_hash FROM failed) THEN 'failed'
         ELSE 'pending'
       END AS state, count(*) AS n
FROM videos AS v LEFT JOIN playlists AS p USING (content_hash)
GROUP BY state
"""

PLAYLIST_STATES = ("remux", "transcode", "failed", "pending")


def _read_model(conn: sqlite3.Connection) -> dict[str, Any]:
    file = conn.execute("PRAGMA database_list").fetchone()["file"]
    return {
        "position": (Path(file).name if file else None, readmodel.checkpoint(conn)),
        "libraries": [dict(r) for r in conn.execute(_LIBRARIES)],
        "playlists": {r["state"]: r["n"] for r in conn.execute(_PLAYLISTS)},
        "failures": {
            (r["stage"], r["operation"]): r["n"]
            for r in conn.execute(
                "SELECT stage, operation, count(*) AS n FROM failures GROUP BY stage, operation"
            )
        },
    }


def _gauge(name: str, help_: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_, labels=list(labels))


def _families(read: dict[str, Any] | None, state: PipelineState) -> list[Metric]:
    lib = {
        k: _gauge(f"eventsvc_library_{k}", f"The library's {k} in the read model.", ["library"])
        for k in ("files", "images", "videos", "bytes")
    }
    online = _gauge(
        "eventsvc_library_online", "1 while the library is online, 0 while stale.", ["library"]
    )
    playlists = _gauge(
        "eventsvc_playlists",
        "Video contents by playlist state: remux, transcode, failed, pending.",
        ["state"],
    )
    failures = _gauge(
        "eventsvc_failures",
        "DerivationFailed facts recorded in the read model.",
        ["stage", "operation"],
    )
    readmodel_up = _gauge("eventsvc_readmodel_up", "1 when the read model could be read.")
    readmodel_up.add_metric([], 0.0 if read is None else 1.0)
    for r in (read or {}).get("libraries", []):
        for k, fam in lib.items():
            fam.add_metric([r["library_id"]], float(r[k] or 0))
        online.add_metric([r["library_id"]], 1.0 if r["state"] == "online" else 0.0)
    if read is not None:
        for s in PLAYLIST_STATES:
            playlists.add_metric([s], float(read["playlists"].get(s, 0)))
        for (stage, operation), n in sorted(read["failures"].items()):
            failures.add_metric([stage, operation], float(n))

    c = {
        k: _gauge(f"eventsvc_consumer_{k}", help_, ["consumer"])
        for k, help_ in (
            ("pending", "Messages the durable consumer has not been delivered yet."),
            ("ack_pending", "Messages delivered to the consumer and not acked yet."),
            ("redelivered", "Messages delivered to the consumer more than once, not acked."),
        )
    }
    for cs in state.consumers:
        for k, fam in c.items():
            fam.add_metric([cs.name], float(getattr(cs, k)))
    nats = _gauge("eventsvc_nats_connected", "1 while the API holds a NATS connection.")
    nats.add_metric([], 1.0 if state.connected else 0.0)
    stream = {
        k: _gauge(f"eventsvc_stream_{k}", f"The event stream's {k.replace('_', ' ')}.")
        for k in ("messages", "bytes", "last_seq")
    }
    if state.stream is not None and state.stream.exists:
        for k, fam in stream.items():
            fam.add_metric([], float(getattr(state.stream, k)))
    checkpoint = _gauge(
        "eventsvc_projector_checkpoint", "The last stream sequence in the read model."
    )
    checkpoint.add_metric([], float(state.projector.checkpoint))
    lag = _gauge("eventsvc_projector_lag", "Events in the stream not in the read model yet.")
    if state.projector.lag is not None:
        lag.add_metric([], float(state.projector.lag))
    return [
        *lib.values(), online, playlists, failures, readmodel_up,
        *c.values(), nats, *stream.values(), checkpoint, lag,
    ]  # fmt: skip


class _Snapshot(Collector):
    """The families taken for the scrape being written (set just before it)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []
        self.lock = threading.Lock()

    def collect(self) -> Iterable[Metric]:
        return list(self.families)


class ApiMetrics:
    """The API's instruments, in ``metrics``' registry (the process's: ``up`` passes the
    one its workers count in)."""

    def __init__(self, metrics: ProcessMetrics | None = None) -> None:
        self.process = metrics if metrics is not None else ProcessMetrics()
        registry = self.process.registry
        self.requests = Histogram(
            "eventsvc_http_request_seconds",
            "API request latency by method, route template and status code.",
            ["method", "route", "status"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.snapshot = _Snapshot()
        registry.register(self.snapshot)

    async def scrape(self, ctx: ApiContext) -> bytes:
        # the checkpoint before the stream (the status service's rule: lag >= 0)
        read = await db.read(ctx.settings.readmodel_dir, _read_model, None)
        generation, checkpoint = read["position"] if read is not None else (None, 0)
        state = await pipeline_state(ctx.event_log, (generation, checkpoint), why=ctx.nats_error)
        families = _families(read, state)
        with self.snapshot.lock:  # one scrape's families at a time, written out with them
            self.snapshot.families = families
            return generate_latest(self.process.registry)


def open_on_loopback(settings: Settings) -> bool:
    """Whether a loopback client may scrape without a token."""
    if settings.metrics_open_on_loopback is not None:
        return settings.metrics_open_on_loopback
    return is_loopback(settings.api_host)


def request_timer(metrics: ApiMetrics) -> Any:
    """Litestar middleware: each request's time by method, route template and status."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def timed(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            t0 = time.perf_counter()
            status = 500

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            except Exception as exc:  # answered by the exception handlers outside
                status = int(getattr(exc, "status_code", 500))
                raise
            finally:
                route = scope.get("path_template") or "<unmatched>"
                metrics.requests.labels(scope.get("method", ""), route, str(status)).observe(
                    time.perf_counter() - t0
                )

        return timed

    return middleware


@get(
    "/metrics",
    opt=PUBLIC,  # checked below: a loopback scraper may be let in without a token
    summary="Prometheus metrics",
    description="This process's metrics in Prometheus text format. Needs the read scope "
    "unless the client is on loopback and EVENTSVC_METRICS_OPEN_ON_LOOPBACK allows it.",
    tags=["pipeline"],
    media_type=CONTENT_TYPE_LATEST,
)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = request.app.state
    ctx: ApiContext = state.ctx
    access: Access = state.access
    client = request.client.host if request.client else ""
    if not access.open and not (open_on_loopback(ctx.settings) and is_loopback(client)):
        access.principal(request)  # 401 without a token; any scope may read
    body = await state.metrics.scrape(ctx)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
