"""GET /metrics and the per-process metrics port (issue 14): real nats-server, real SQLite,
real generated media, parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from litestar.testing import AsyncTestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from eventsvc.components import ApiServer
from eventsvc.core.log import EventLog
from eventsvc.core.metrics import ProcessMetrics
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.server import EmbeddedNats, free_port
from projections.app import create_app
from tests.clip.tiny import colour_image, make_tiny_clip
from tests.harness import Pipeline, cli, make_jpeg, make_video, running, wait_until

ROOT = Path(__file__).resolve().parent.parent
READ = "r" * 24
WRITE = "w" * 24

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[set[str], Samples]:
    """(family names, {(sample name, sorted labels): value})."""
    families, samples = set(), {}
    for fam in text_string_to_metric_families(text):
        families.add(fam.name)
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` served by uvicorn on loopback in this event loop (the loop the test's NATS
    connection belongs to), and a client for it."""
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(ApiServer(app, "127.0.0.1", port).run(stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def up() -> bool:
                try:
                    return (await http.get("/health")).status_code < 500
                except httpx.TransportError:
                    return False

            await wait_until(up, 20)
            yield http
    finally:
        stop.set()
        await task


async def scrape(client: Any, **headers: str) -> tuple[set[str], Samples]:
    r = await client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


async def test_counters_move_as_a_generated_library_is_indexed(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    images = [make_jpeg(lib / f"{i}.jpg", i) for i in range(5)]
    video = make_video(lib / "v" / "clip.mp4")
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    files = [*images, video, lib / "broken.jpg"]
    libs, _ = load_libraries([str(lib)])
    metrics = ProcessMetrics()
    app = create_app(settings, event_log=event_log, libraries=libs, metrics=metrics)
    async with (
        running(Pipeline(event_log, settings, libs)) as p,
        serving(app) as client,
    ):
        metrics.add_scanner(p.scanner)
        metrics.add_worker(p.hasher)
        metrics.add_worker(p.media)
        assert p.projector is not None
        metrics.add_projector(p.projector)
        _, before = await scrape(client)
        assert value(before, "eventsvc_stage_done_total", stage="hasher") == 0
        assert value(before, "eventsvc_library_files", library=libs[0].id) is None

        await p.scanner.tick(full=True)
        await p.settled()
        last = await event_log.last_seq()
        names, after = await scrape(client)

    lib_id = libs[0].id
    assert value(after, "eventsvc_library_files", library=lib_id) == len(files)
    assert value(after, "eventsvc_library_images", library=lib_id) == len(images) + 1
    assert value(after, "eventsvc_library_videos", library=lib_id) == 1
    assert value(after, "eventsvc_library_bytes", library=lib_id) == sum(
        f.stat().st_size for f in files
    )
    assert value(after, "eventsvc_library_online", library=lib_id) == 1
    # per stage, counted in the workers
    assert value(after, "eventsvc_stage_done_total", stage="hasher") == len(files)
    assert value(after, "eventsvc_stage_published_total", stage="hasher") == len(files)
    assert value(after, "eventsvc_stage_seconds_count", stage="hasher", outcome="ok") == len(files)
    assert value(after, "eventsvc_stage_done_total", stage="media") == len(files)
    assert (
        value(after, "eventsvc_failures", stage="media", operation="thumbnail") == 1
    )  # the broken JPEG
    # the scanner: one full scan
    assert value(after, "eventsvc_scan_seconds_count", library=lib_id, kind="full") == 1
    assert value(after, "eventsvc_scan_files", library=lib_id) == len(files)
    # the status service: consumers drained, projector at the stream's end
    for consumer in ("hasher", "media"):
        assert value(after, "eventsvc_consumer_pending", consumer=consumer) == 0
        assert value(after, "eventsvc_consumer_ack_pending", consumer=consumer) == 0
    assert value(after, "eventsvc_projector_checkpoint") == last
    assert value(after, "eventsvc_projector_lag") == 0
    assert value(after, "eventsvc_projector_seq") == last
    assert value(after, "eventsvc_stream_last_seq") == last
    # no playlist worker ran: the video waits
    assert value(after, "eventsvc_playlists", state="pending") == 1
    assert value(after, "eventsvc_playlists", state="remux") == 0
    # requests by route: the first scrape was timed under its route
    assert value(after, "eventsvc_http_request_seconds_count", method="GET", route="/metrics",
                 status="200") == 1  # fmt: skip
    assert "eventsvc_model_ready" in names


async def test_request_latency_is_by_route_template_not_path(
    tmp_path: Path, settings: Settings
) -> None:
    app = create_app(settings.model_copy(update={"nats_url": None}))
    async with AsyncTestClient(app, base_url="http://127.0.0.1") as client:
        for n in (1, 2, 3):
            assert (await client.get(f"/photos/{n:064x}")).status_code in (404, 422)
        _, samples = await scrape(client)
    counts = {
        dict(k[1])["route"]: v
        for k, v in samples.items()
        if k[0] == "eventsvc_http_request_seconds_count"
    }
    photo_routes = [r for r in counts if r.startswith("/photos")]
    assert len(photo_routes) == 1 and "{" in photo_routes[0], counts
    assert counts[photo_routes[0]] == 3


def _token_settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", nats_url=None, api_token=WRITE, api_read_token=READ, **kw
    )


async def test_metrics_need_the_read_scope(tmp_path: Path) -> None:
    app = create_app(_token_settings(tmp_path))
    async with AsyncTestClient(app, base_url="http://127.0.0.1") as client:  # not loopback
        r = await client.get("/metrics")
        assert r.status_code == 401
        assert (
            await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        ).status_code == 401
        await scrape(client, Authorization=f"Bearer {READ}")
        await scrape(client, Authorization=f"Bearer {WRITE}")


@pytest.mark.parametrize(("opt_out", "status"), [(None, 200), (True, 200), (False, 401)])
async def test_loopback_scraper_opt_out(tmp_path: Path, opt_out: bool | None, status: int) -> None:
    """A real server on loopback: a scraper there needs no token unless opted out."""
    s = _token_settings(tmp_path, metrics_open_on_loopback=opt_out)
    async with serving(create_app(s)) as http:
        assert (await http.get("/metrics")).status_code == status
        assert (await http.get("/libraries")).status_code == 401  # the rest is unchanged


def test_open_on_loopback_default_follows_the_bind() -> None:
    from projections.api.metrics import open_on_loopback

    assert open_on_loopback(Settings(api_host="127.0.0.1"))
    assert not open_on_loopback(Settings(api_host="0.0.0.0"))
    assert open_on_loopback(Settings(api_host="0.0.0.0", metrics_open_on_loopback=True))


async def test_worker_process_serves_its_metrics_on_its_port(
    tmp_path: Path, event_log: EventLog, settings: Settings, nats_server: EmbeddedNats
) -> None:
    lib = tmp_path / "lib"
    for i in range(3):
        make_jpeg(lib / f"{i}.jpg", i)
    libs, _ = load_libraries([str(lib)])
    port = free_port()
    env = {
        "EVENTSVC_DATA_DIR": str(settings.data_dir),
        "EVENTSVC_NATS_URL": nats_server.url,
        "EVENTSVC_METRICS_PORT": str(port),
        "EVENTSVC_WATCH": "false",
    }
    proc = cli("worker", "hasher", str(lib), env=env)
    try:
        async with (
            running(Pipeline(event_log, settings, libs), hasher=False, media=False) as p,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http,
        ):

            async def done() -> Samples | None:
                try:
                    r = await http.get("/metrics")
                except httpx.TransportError:
                    return None
                _, samples = parse(r.text)
                n = value(samples, "eventsvc_stage_done_total", stage="hasher")
                return samples if n == 3 else None

            async def listening() -> bool:
                try:
                    return (await http.get("/metrics")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(listening, 60)
            await p.scanner.tick(full=True)
            samples = await wait_until(done, 60)
        assert value(samples, "eventsvc_stage_seconds_count", stage="hasher", outcome="ok") == 3
        assert value(samples, "eventsvc_library_files", library=libs[0].id) is None  # API's
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]


_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


async def test_dashboard_and_scrape_config_use_exported_names(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data", nats_url=None), metrics=ProcessMetrics())
    async with AsyncTestClient(app, base_url="http://127.0.0.1") as client:
        families, _ = await scrape(client)
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "eventsvc.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert len(exprs) >= 10
    used = {n for e in exprs for n in re.findall(r"\beventsvc_[a-z_]+", e)}
    for name in used:
        base = next((name[: -len(s)] for s in _SUFFIXES if name.endswith(s)), name)
        assert base in families or name in families, f"dashboard uses {name}: not exported"
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["eventsvc"].get("metrics_path", "/metrics") == "/metrics"


async def test_model_state_follows_the_clip_model(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    """No CLIP model: the stage reports not ready and derives nothing; once the model is
    there it reports ready, with its version, and its counters move."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for i, colour in enumerate(("red", "green")):
        colour_image(colour, (40 + i, 30)).save(lib / f"{colour}.jpg")
    model = tmp_path / "model"
    s = settings.model_copy(
        update={"clip_model_dir": model, "clip_batch_window": 0.05, "clip_recheck_interval": 0.3}
    )
    libs, _ = load_libraries([str(lib)])
    metrics = ProcessMetrics()
    registry = metrics.registry

    def now() -> Samples:
        return parse(generate_latest(registry).decode())[1]

    async with running(Pipeline(event_log, s, libs), media=False, workers=("clip",)) as p:
        metrics.add_worker(p.workers["clip"])
        await p.scanner.tick(full=True)
        await wait_until(lambda: value(now(), "eventsvc_model_ready", stage="clip", model="") == 0)
        await asyncio.sleep(1.0)  # rechecks come and go: still nothing derived
        assert value(now(), "eventsvc_stage_done_total", stage="clip") == 0
        make_tiny_clip(model)
        await wait_until(lambda: value(now(), "eventsvc_stage_done_total", stage="clip") == 2, 60)
    ready = {dict(k[1])["model"]: v for k, v in now().items() if k[0] == "eventsvc_model_ready"}
    [(version, state)] = ready.items()
    assert version and state == 1
    assert value(now(), "eventsvc_stage_seconds_count", stage="clip", outcome="ok") == 2
