"""Optional tracing (issue 14): a span per derivation, its parent found through the log;
nothing imported when it is not configured or not installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventsvc.core import tracing
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from tests.harness import Pipeline, make_jpeg, running


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        provider.shutdown()


async def test_a_derivation_span_has_its_producers_context(
    tmp_path: Path, event_log: EventLog, settings: Settings, spans: InMemorySpanExporter
) -> None:
    make_jpeg(tmp_path / "lib" / "a.jpg", 1)
    libraries, _ = load_libraries([str(tmp_path / "lib")], None)
    async with running(Pipeline(event_log, settings, libraries), projector=False) as p:
        await p.scanner.tick(full=True)
        await p.settled()
    done = {s.name: s for s in spans.get_finished_spans()}
    hasher, media = done["derive hasher"], done["derive media"]
    # the hasher derived from the scanner's FileSeen, the media worker from the hasher's
    # HashComputed: its span is the hasher span's child, across the log
    assert media.parent is not None
    assert media.parent.span_id == hasher.context.span_id
    assert media.context.trace_id == hasher.context.trace_id
    assert media.attributes is not None and hasher.attributes is not None
    assert media.attributes["eventsvc.stage"] == "media"
    assert media.attributes["eventsvc.causation"] == str(hasher.attributes["eventsvc.seq"])
    # the published event carries the context; the scanner's (not traced) does not
    with_parent = [
        raw.headers.get("traceparent")
        async for batch in event_log.read()
        for raw in batch
        if raw.headers
    ]
    assert any(h and f"{hasher.context.span_id:016x}" in h for h in with_parent), with_parent


def test_without_a_traceparent_the_causation_links_the_derivations(
    spans: InMemorySpanExporter,
) -> None:
    headers = {"Eventsvc-Causation": "41"}
    for stage, seq in (("faces", 50), ("clip", 51)):
        with tracing.derivation(stage, seq, "photos.x", headers):
            pass
    faces, clip = spans.get_finished_spans()
    assert faces.parent is not None and clip.parent is not None
    assert faces.parent.span_id == clip.parent.span_id  # both: the message at seq 41
    assert faces.context.trace_id == clip.context.trace_id
    with tracing.derivation("media", 52, "photos.y", {"Eventsvc-Causation": "42"}):
        pass
    other = spans.get_finished_spans()[-1]
    assert other.context.trace_id != faces.context.trace_id


def test_off_costs_nothing_and_imports_nothing() -> None:
    tracing.use_provider(None)
    with tracing.derivation("media", 1, "photos.x", {"Eventsvc-Causation": "1"}) as span:
        assert span is None
    hdrs: dict[str, str] = {}
    tracing.inject(hdrs)
    assert hdrs == {}


HIDDEN = """
import importlib.abc, logging, sys

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ImportError(f"hidden: {name}")
        return None

sys.meta_path.insert(0, Hide())
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s: %(message)s")
import eventsvc.cli, eventsvc.components, eventsvc.derive.worker, eventsvc.core.log
from eventsvc.core import tracing
print("configured", tracing.configure(ENDPOINT))
with tracing.derivation("media", 1, "photos.x", {"Eventsvc-Causation": "1"}) as span:
    print("span", span)
hdrs = {}
tracing.inject(hdrs)
print("headers", hdrs)
print("imported", sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""


@pytest.mark.parametrize("endpoint", [None, "http://127.0.0.1:9/"])
def test_with_the_package_hidden_nothing_imports_it(endpoint: str | None) -> None:
    code = textwrap.dedent(HIDDEN).replace("ENDPOINT", repr(endpoint))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "configured False" in out
    assert "span None" in out and "headers {}" in out
    assert "imported []" in out
    if endpoint:  # configured but not installed: said once, clearly
        assert "OpenTelemetry is not installed" in out


def test_the_otlp_exporter_is_set_up_from_the_setting() -> None:
    """Exporting happens in the background (nothing listens on port 9: dropped)."""
    code = textwrap.dedent("""
        from eventsvc.core import tracing
        print(tracing.configure("http://127.0.0.1:9"), tracing.enabled())
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.splitlines()[0] == "True True"
