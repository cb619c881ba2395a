"""Optional OpenTelemetry tracing of derivations (issue 14; extra ``tracing``).

One span per derivation (a worker handling one message: ``derive <stage>``), its parent
found through the log: the ``traceparent`` header (W3C) a traced deriver put on the event
it published, else a context derived from the event's causation header
(``Eventsvc-Causation``: the stream sequence it was derived from), so the derivations of
one input share a trace even when their producer was not traced. Spans go over OTLP/HTTP
to ``EVENTSVC_OTLP_ENDPOINT`` when it is set.

Without the setting, or without the package, nothing here imports opentelemetry and
:func:`derivation` / :func:`inject` cost one ``if``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

__all__ = ["configure", "derivation", "enabled", "inject", "parent_of", "use_provider"]

log = logging.getLogger(__name__)

HDR_TRACEPARENT = "traceparent"
HDR_CAUSATION = "Eventsvc-Causation"  # eventsvc.core.events.HDR_CAUSATION (no import here)

_tracer: Any = None  # an opentelemetry Tracer once configured; None: tracing is off


def enabled() -> bool:
    return _tracer is not None


def configure(endpoint: str | None, service: str = "eventsvc") -> bool:
    """Export spans over OTLP/HTTP to ``endpoint`` (e.g. ``http://127.0.0.1:4318``;
    ``/v1/traces`` is added). None: tracing stays off. True when tracing is on."""
    if not endpoint:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        log.warning(
            "tracing: EVENTSVC_OTLP_ENDPOINT is set but OpenTelemetry is not installed "
            "(pip install 'eventsvc[tracing]'): no spans (%s)", exc,
        )  # fmt: skip
        return False
    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    use_provider(provider)
    log.info("tracing: derivation spans to %s", url)
    return True


def use_provider(provider: Any) -> None:
    """Trace with this TracerProvider (tests: one with an in-memory exporter); None:
    tracing off."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("eventsvc")


def _ids(causation: int) -> tuple[int, int]:
    digest = hashlib.sha256(f"eventsvc-causation:{causation}".encode()).digest()
    return int.from_bytes(digest[:16], "big") or 1, int.from_bytes(digest[16:24], "big") or 1


def parent_of(headers: Mapping[str, str] | None) -> Any:
    """The parent context of a derivation of the message with ``headers``: its
    ``traceparent``, else one derived from its causation; None without either."""
    if not headers:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if HDR_TRACEPARENT in headers:
        ctx = TraceContextTextMapPropagator().extract(dict(headers))
        if trace.get_current_span(ctx).get_span_context().is_valid:
            return ctx
    causation = headers.get(HDR_CAUSATION)
    if causation is None or not str(causation).isdigit():
        return None
    trace_id, span_id = _ids(int(causation))
    parent = trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


@contextlib.contextmanager
def derivation(
    stage: str, seq: int, subject: str, headers: Mapping[str, str] | None
) -> Iterator[Any]:
    """The span of ``stage`` deriving from message ``seq`` (None while tracing is off);
    events published inside it carry its context (:func:`inject`)."""
    if _tracer is None:
        yield None
        return
    attrs: dict[str, Any] = {
        "eventsvc.stage": stage,
        "eventsvc.seq": seq,
        "messaging.system": "nats",
        "messaging.destination.name": subject,
    }
    causation = (headers or {}).get(HDR_CAUSATION)
    if causation is not None:
        attrs["eventsvc.causation"] = str(causation)
    with _tracer.start_as_current_span(
        f"derive {stage}", context=parent_of(headers), attributes=attrs
    ) as span:
        yield span


def inject(headers: MutableMapping[str, str]) -> None:
    """Put the current span's ``traceparent`` on an event about to be published."""
    if _tracer is None:
        return
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    TraceContextTextMapPropagator().inject(headers)
