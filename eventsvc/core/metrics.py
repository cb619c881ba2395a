"""Prometheus metrics of one process (issue 14): a registry of its own, never the global
default one, so that several apps or pipelines in one (test) process do not collide.

The write side's numbers are read from the objects that already keep them, when
Prometheus scrapes (:class:`Sources`): workers' ``stats`` (done/failed/retried/published,
the CLIP/faces model state, held messages), the scanner's last reports, the projector's
progress. What needs observing as it happens is observed here: each stage's handler time
(:meth:`ProcessMetrics.observe_stage`, from :class:`eventsvc.derive.worker.Worker`) and
each scan's duration (:meth:`ProcessMetrics.observe_scan`, from the scanner).

Objects are duck-typed (core imports nothing above it): a worker has ``name``, ``stats``
and maybe ``background`` (another worker); the scanner ``reports`` (library id -> report
with ``files``, ``state``...); the projector ``status`` (``last_seq``, ``applied``).

A process without an API (``eventsvc worker NAME``, ``scan --loop``, ``project``) serves
its registry with :func:`serve` on ``settings.metrics_port``; ``eventsvc up`` serves all of
it on the API's ``GET /metrics``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from eventsvc.core.errors import ConfigError

__all__ = ["STAGE_BUCKETS", "MetricsServer", "ProcessMetrics", "Sources", "serve"]

log = logging.getLogger(__name__)

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
"""Seconds: a hash of a small file up to a long video's transcode."""


class Sources(Collector):
    """Counters and gauges read from the write side's objects at scrape time."""

    def __init__(self) -> None:
        self.workers: list[Any] = []
        self.scanners: list[Any] = []
        self.projectors: list[Any] = []
        self._lock = threading.Lock()

    def _all_workers(self) -> Iterator[Any]:
        with self._lock:
            workers = list(self.workers)
        seen: set[int] = set()
        while workers:
            w = workers.pop(0)
            if id(w) in seen:
                continue
            seen.add(id(w))
            yield w
            bg = getattr(w, "background", None)
            if bg is not None:
                workers.append(bg)

    def collect(self) -> Iterable[Metric]:
        yield from self._stages()
        yield from self._scans()
        yield from self._projector()

    def _stages(self) -> Iterable[Metric]:
        counters = {
            k: CounterMetricFamily(f"eventsvc_stage_{k}", help_, labels=["stage"])
            for k, help_ in (
                ("done", "Messages a stage handled and acked."),
                ("failed", "Messages a stage gave up on (a DerivationFailed recorded)."),
                ("retried", "Handler failures retried with back-off (nak)."),
                ("published", "Events a stage published."),
            )
        }
        ready = GaugeMetricFamily(
            "eventsvc_model_ready",
            "1 when the stage's inference model (CLIP, faces) answers, 0 while paused.",
            labels=["stage", "model"],
        )
        held = GaugeMetricFamily(
            "eventsvc_stage_held", "Messages held un-acked while the model is unavailable.",
            labels=["stage"],
        )  # fmt: skip
        disabled = GaugeMetricFamily(
            "eventsvc_stage_disabled", "1 when a stage cannot run here (e.g. no ffmpeg).",
            labels=["stage"],
        )  # fmt: skip
        for w in self._all_workers():
            st = w.stats
            for k, fam in counters.items():
                fam.add_metric([w.name], float(getattr(st, k, 0)))
            if hasattr(st, "model_error"):
                ready.add_metric(
                    [w.name, st.model or ""], 0.0 if st.model_error or not st.model else 1.0
                )
                held.add_metric([w.name], float(st.held))
            if hasattr(st, "disabled"):
                disabled.add_metric([w.name], 1.0 if st.disabled else 0.0)
        yield from counters.values()
        yield from (ready, held, disabled)

    def _scans(self) -> Iterable[Metric]:
        files = GaugeMetricFamily(
            "eventsvc_scan_files", "Files the library's last scan found.", labels=["library"]
        )
        online = GaugeMetricFamily(
            "eventsvc_scan_online",
            "1 when the library's last scan found it online, 0 when stale.",
            labels=["library"],
        )
        last = GaugeMetricFamily(
            "eventsvc_scan_last_duration_seconds", "The last scan's duration.", labels=["library"]
        )
        with self._lock:
            scanners = list(self.scanners)
        for s in scanners:
            for lib, r in list(s.reports.items()):
                files.add_metric([lib], float(r.files))
                online.add_metric([lib], 1.0 if r.state == "online" else 0.0)
                last.add_metric([lib], float(r.duration_s))
        yield from (files, online, last)

    def _projector(self) -> Iterable[Metric]:
        applied = CounterMetricFamily(
            "eventsvc_projector_applied", "Events this process's projector applied."
        )
        seq = GaugeMetricFamily(
            "eventsvc_projector_seq", "The last stream sequence this process's projector applied."
        )
        with self._lock:
            projectors = list(self.projectors)
        for p in projectors:
            applied.add_metric([], float(p.status.applied))
            seq.add_metric([], float(p.status.last_seq))
        yield from (applied, seq)


class ProcessMetrics:
    """One process's registry and the write side's instruments in it."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.sources = Sources()
        self.registry.register(self.sources)
        self.stage_seconds = Histogram(
            "eventsvc_stage_seconds",
            "Time a stage's handler took per message (outcome ok, or error: retried, "
            "failed or held).",
            ["stage", "outcome"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.scan_seconds = Histogram(
            "eventsvc_scan_seconds",
            "Scan durations by library and kind (full or quick); its _count counts scans.",
            ["library", "kind"],
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
            registry=self.registry,
        )

    def add_worker(self, worker: Any) -> Any:
        """Count ``worker`` (and its background worker) here; returns it."""
        worker.metrics = self
        bg = getattr(worker, "background", None)
        if bg is not None:
            bg.metrics = self
        with self.sources._lock:
            self.sources.workers.append(worker)
        return worker

    def add_scanner(self, scanner: Any) -> Any:
        scanner.metrics = self
        with self.sources._lock:
            self.sources.scanners.append(scanner)
        return scanner

    def add_projector(self, projector: Any) -> Any:
        with self.sources._lock:
            self.sources.projectors.append(projector)
        return projector

    def observe_stage(self, stage: str, outcome: str, seconds: float) -> None:
        self.stage_seconds.labels(stage, outcome).observe(seconds)

    def observe_scan(self, report: Any) -> None:
        kind = "full" if report.full else "quick"
        self.scan_seconds.labels(report.library_id, kind).observe(report.duration_s)


class MetricsServer:
    """prometheus_client's HTTP server on a thread, serving one registry."""

    def __init__(self, metrics: ProcessMetrics, host: str, port: int) -> None:
        try:
            self.server, self.thread = start_http_server(port, addr=host, registry=metrics.registry)
        except OSError as exc:
            raise ConfigError(f"metrics: cannot listen on {host}:{port}: {exc.strerror}") from exc
        self.port = self.server.server_address[1]
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(metrics: ProcessMetrics, host: str, port: int | None) -> MetricsServer | None:
    """Serve ``metrics`` on ``host:port`` (0: any free port); None when ``port`` is None."""
    if port is None:
        return None
    return MetricsServer(metrics, host, port)
