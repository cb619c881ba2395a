"""The real processes: `eventsvc up`, and components SIGKILLed mid-ingest."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.server import EmbeddedNats, free_port
from projections import readmodel
from tests.harness import Pipeline, b3, cli, make_jpeg, make_video, running, wait_until


def _get(url: str, token: str | None = None) -> Any:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def _all_photos(api: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    url = f"{api}/photos?limit=50"
    while True:
        page = _get(url)
        items += page["items"]
        if not page["next"]:
            return items
        url = f"{api}/photos?limit=50&cursor={page['next']}"


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20) -> str:
    """Signal (0: just wait), wait, and kill if it does not end: no process outlives a test."""
    if proc.poll() is None and sig:
        proc.send_signal(sig)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out.decode(errors="replace")


async def test_up_indexes_a_library_and_serves_it(tmp_path: Path) -> None:
    lib = tmp_path / "Pictures"
    expected = [
        make_jpeg(lib / "2023" / "01" / "a.jpg", 1, exif=True),
        make_jpeg(lib / "2023" / "01" / "b.jpeg", 2),
        make_jpeg(lib / "2024" / "deep" / "er" / "c.JPG", 3, exif=True),
        make_video(lib / "videos" / "clip.mp4"),
    ]
    make_jpeg(lib / "@eaDir" / "SYNOPHOTO_THUMB.jpg", 4)  # excluded by default
    (lib / "2023" / "notes.txt").write_text("not media")
    data, port = tmp_path / "data", free_port()
    proc = cli("up", str(lib), "--data-dir", str(data), "--port", str(port))
    api = f"http://127.0.0.1:{port}"
    try:

        async def indexed() -> bool:
            try:
                items = _all_photos(api)
            except OSError:
                return False
            return len(items) == len(expected) and all(i["content_hash"] for i in items)

        await wait_until(indexed, 60, 0.25)
        got = {i["path"]: i["content_hash"] for i in _all_photos(api)}
        assert got == {str(p.relative_to(lib)): b3(p) for p in expected}
        [library] = _get(f"{api}/libraries")["items"]
        assert library["state"] == "online" and library["files"] == len(expected)
        one = _get(f"{api}/photos/{b3(expected[0])}")
        assert one["locations"][0]["path"] == "2023/01/a.jpg"
        assert _get(f"{api}/healthz")["status"] == "ok"
        assert "paths" in _get(f"{api}/schema/openapi.json")
        # A new file shows up without waiting for the next tick (file-system notifications).
        make_jpeg(lib / "new.jpg", 9)

        async def has_new() -> bool:
            return any(i["path"] == "new.jpg" and i["content_hash"] for i in _all_photos(api))

        await wait_until(has_new, 15, 0.2)
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    url_file = data / "nats" / "nats.url"
    assert not url_file.exists(), "the embedded nats-server was not stopped"


async def test_up_reports_a_clear_error_when_the_port_is_taken(tmp_path: Path) -> None:
    import socket

    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = cli("up", str(lib), "--data-dir", str(tmp_path / "d"), "--port", str(port))
        out = _stop(proc, sig=0, timeout=30)  # it must exit by itself
    assert proc.returncode != 0
    # The API's own message, naming the port: not any line that happens to hold "port".
    assert re.search(rf"could not listen on [^ ]*:{port} \(port in use\?\)", out), out


async def test_hasher_and_projector_killed_mid_ingest_converge_to_a_clean_run(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    lib = tmp_path / "lib"
    files = [make_jpeg(lib / f"d{i % 7}" / f"{i}.jpg", i, size=(480, 360)) for i in range(400)]
    url = nats_server.url
    env = {"EVENTSVC_NATS_URL": url, "EVENTSVC_ACK_WAIT": "2", "EVENTSVC_LOG_LEVEL": "WARNING"}
    data = tmp_path / "data"
    scan = cli("scan", str(lib), "--data-dir", str(data), env=env)
    assert scan.wait(60) == 0, scan.communicate()[0]
    event_log = await EventLog.connect(url)
    try:

        def start() -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
            return (
                cli("worker", "hasher", str(lib), "--data-dir", str(data), env=env),
                cli("project", "--data-dir", str(data), env=env),
            )

        def projected() -> int:
            path = readmodel.current_path(data / "readmodel")
            if path is None:
                return 0  # no generation yet
            conn = readmodel.open_reader(path)
            try:
                return readmodel.checkpoint(conn)
            finally:
                conn.close()

        # Real progress on both sides before the kill: the projector first, alone, until it
        # has published a generation with some of the scan in it; then the hasher, until it
        # has acked some files and still has files to go.
        projector = cli("project", "--data-dir", str(data), env=env)
        await wait_until(lambda: projected() > 0, 60, 0.05)
        hasher = cli("worker", "hasher", str(lib), "--data-dir", str(data), env=env)

        async def midway() -> bool:
            try:
                ci = await event_log.js.consumer_info("PHOTOS", "hasher")
            except Exception:
                return False
            return ci.ack_floor.stream_seq > 20 and ci.num_pending > 0

        await wait_until(midway, 60, 0.02)
        assert projector.poll() is None and hasher.poll() is None, "a process ended by itself"
        hasher.send_signal(signal.SIGKILL)
        projector.send_signal(signal.SIGKILL)
        hasher.wait()
        projector.wait()
        ci = await event_log.js.consumer_info("PHOTOS", "hasher")
        assert ci.num_pending > 0, "the kill came too late to be mid-ingest"
        hasher, projector = start()

        async def settled() -> bool:
            ci = await event_log.js.consumer_info("PHOTOS", "hasher")
            if ci.num_pending or ci.num_ack_pending:
                return False
            conn = readmodel.open_reader(readmodel.current_path(data / "readmodel"))
            try:
                return readmodel.checkpoint(conn) == await event_log.last_seq()
            finally:
                conn.close()

        await wait_until(settled, 90, 0.2)
        _stop(hasher)
        _stop(projector)
        conn = readmodel.open_reader(readmodel.current_path(data / "readmodel"))
        killed = readmodel.dump(conn)
        got = dict(conn.execute("SELECT path, content_hash FROM files").fetchall())
        conn.close()
        assert got == {str(f.relative_to(lib)): b3(f) for f in files}
        hashed = [r for r in await Pipeline(event_log, Settings(), []).events("HashComputed")]
        assert len(hashed) == len(files), "a redelivered message was hashed into the log twice"
    finally:
        await event_log.close()

    # A clean run on its own server: the same files and content rows.
    clean_nats = EmbeddedNats(tmp_path / "clean-nats")
    clean_nats.start()
    try:
        clean_log = await EventLog.connect(clean_nats.url)
        await clean_log.ensure_stream()
        settings = Settings(data_dir=tmp_path / "clean", nats_url=clean_nats.url, watch=False)
        libs, _ = load_libraries([str(lib)])
        async with running(Pipeline(clean_log, settings, libs), media=False) as p:
            await p.scanner.tick(full=True)
            await p.settled(60)
            conn = p.db()
            clean = readmodel.dump(conn)
            conn.close()
        await clean_log.close()
    finally:
        clean_nats.stop()

    def stable(dump: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
        # Sequences and timestamps differ between two logs; everything else must not.
        return {
            "files": sorted((r[0], r[1], r[2], r[4], r[5], r[6], r[9]) for r in dump["files"]),
            "content": sorted(r[:8] for r in dump["content"]),
            "libraries": sorted(r[:5] for r in dump["libraries"]),
            "failures": [],
        }

    assert stable(killed) == stable(clean)
    assert killed["failures"] == [] and clean["failures"] == []


async def test_rebuild_command_swaps_while_the_api_serves(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for i in range(30):
        make_jpeg(lib / f"{i}.jpg", i)
    data, port = tmp_path / "data", free_port()
    proc = cli("up", str(lib), "--data-dir", str(data), "--port", str(port), "--no-watch")
    api = f"http://127.0.0.1:{port}"
    try:

        async def indexed() -> bool:
            try:
                items = _all_photos(api)
            except OSError:
                return False
            return len(items) == 30 and all(i["content_hash"] for i in items)

        await wait_until(indexed, 60, 0.25)

        def quiet() -> bool:
            state = _get(f"{api}/pipeline")
            workers = state["extra"]["workers"]
            # a worker paused for a missing model or tool keeps (or lacks) its backlog
            paused = {n for n, w in workers.items() if w.get("model_error") or w.get("disabled")}
            busy = any(
                c["pending"] or c["ack_pending"]
                for c in state["consumers"]
                if c["name"] not in paused
            )
            names = {c["name"] for c in state["consumers"]}
            expected = set(Settings().workers) - paused
            return not busy and state["projector"]["lag"] == 0 and expected <= names

        await wait_until(quiet, 60, 0.25)
        before_path = readmodel.current_path(data / "readmodel")
        conn = readmodel.open_reader(before_path)
        before = readmodel.dump(conn)
        conn.close()
        answers: list[int] = []

        async def poll() -> None:
            while True:
                answers.append(len(_all_photos(api)))
                await asyncio.sleep(0.02)

        poller = asyncio.create_task(poll())
        rb = cli("rebuild", "--data-dir", str(data), "--applier", "process")
        out = await asyncio.to_thread(rb.communicate, None, 60)
        poller.cancel()
        assert rb.returncode == 0, out[0]
        result = json.loads(out[0].decode().strip().splitlines()[-1])
        after_path = readmodel.current_path(data / "readmodel")
        assert after_path != before_path and result["generation"] == after_path.name
        conn = readmodel.open_reader(after_path)
        assert readmodel.dump(conn) == before
        conn.close()
        assert answers and set(answers) == {30}, "the API did not keep serving during the swap"
        await asyncio.sleep(0.1)
        assert len(_all_photos(api)) == 30
    finally:
        _stop(proc)


async def test_a_killed_up_leaves_no_nats_server_behind(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    make_jpeg(lib / "a.jpg")
    data, port = tmp_path / "data", free_port()
    proc = cli("up", str(lib), "--data-dir", str(data), "--port", str(port), "--no-watch")
    url_file = data / "nats" / "nats.url"
    try:
        await wait_until(url_file.exists, 30)
        nats_port = int(url_file.read_text().rsplit(":", 1)[1])
    finally:
        _stop(proc, sig=signal.SIGKILL)

    import socket

    def closed() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", nats_port)) != 0

    await wait_until(closed, 10)
    # The next `up` on the same data dir starts cleanly (store lock released).
    proc = cli("up", str(lib), "--data-dir", str(data), "--port", str(port), "--no-watch")
    try:
        await wait_until(lambda: _healthy(f"http://127.0.0.1:{port}"), 30)
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out


def _healthy(api: str) -> bool:
    try:
        return _get(f"{api}/healthz")["status"] == "ok"
    except OSError:
        return False
