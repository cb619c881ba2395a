"""A NATS restart, and the CLI's read commands, against real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.server import EmbeddedNats
from tests.harness import Pipeline, b3, make_jpeg, running, wait_until


async def test_the_pipeline_survives_a_nats_restart(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    make_jpeg(lib / "before.jpg", 1)
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    event_log = await EventLog.connect(server.url)
    await event_log.ensure_stream()
    settings = Settings(
        data_dir=tmp_path / "data",
        nats_url=server.url,
        watch=False,
        ack_wait=2.0,
        backoff=[0.2, 0.5],
        max_deliver=3,
    )
    libs, _ = load_libraries([str(lib)])
    try:
        async with running(Pipeline(event_log, settings, libs)) as p:
            await p.scanner.tick(full=True)
            await p.settled()
            server.stop()  # NATS goes away under the running workers
            restarted = EmbeddedNats(tmp_path / "nats", port=server.port)
            restarted.start()
            server = restarted
            await wait_until(lambda: event_log.nc.is_connected, 20)
            make_jpeg(lib / "after.jpg", 2)
            await p.scanner.tick(full=True)
            await p.settled(timeout=60)

            def hashes() -> dict[str, str]:
                conn = p.db()
                try:
                    return dict(conn.execute("SELECT path, content_hash FROM files").fetchall())
                finally:
                    conn.close()

            await wait_until(lambda: hashes().get("after.jpg") == b3(lib / "after.jpg"), 30)
            assert hashes()["before.jpg"] == b3(lib / "before.jpg")
    finally:
        await event_log.close()
        server.stop()


def _cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventsvc", *args, "--nats-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_events_and_status_commands(
    tmp_path: Path, event_log: EventLog, settings: Settings, nats_server: EmbeddedNats
) -> None:
    lib = tmp_path / "lib"
    for i in range(3):
        make_jpeg(lib / f"{i}.jpg", i)
    libs, _ = load_libraries([str(lib)])
    async with running(Pipeline(event_log, settings, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled()
    out = _cli("events", "--type", "HashComputed", url=nats_server.url)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 3 and all(line["type"] == "HashComputed" for line in lines)
    assert {line["content_hash"] for line in lines} == {b3(lib / f"{i}.jpg") for i in range(3)}
    out = _cli("events", "--library", libs[0].id, url=nats_server.url)
    kinds = [json.loads(line)["type"] for line in out.stdout.splitlines()]
    assert kinds.count("FileSeen") == 3 and "LibraryOnline" in kinds
    out = _cli("status", "--json", "--data-dir", str(settings.data_dir), url=nats_server.url)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["projector"]["lag"] == 0
    assert sorted(c["name"] for c in status["consumers"]) == ["hasher", "media"]
    assert all(c["pending"] == 0 for c in status["consumers"])
    assert status["libraries"][0]["files"] == 3


def test_no_server_gives_a_clear_error() -> None:
    out = _cli("status", url="nats://127.0.0.1:1")
    assert out.returncode == 1
    assert "cannot connect to NATS" in out.stderr


def test_a_stale_url_file_falls_back_to_the_embedded_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "nats").mkdir(parents=True)
    (data / "nats" / "nats.url").write_text("nats://127.0.0.1:1")  # a crashed `up` left it
    out = subprocess.run(
        [sys.executable, "-m", "eventsvc", "status", "--json", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["stream"]["last_seq"] == 0
