"""Issue 17 item 2: the data dir (thumbnails, read model) on a small tmpfs, filled to the
last byte mid-ingest: `up` keeps running, the stages pause and say why (/healthz
degraded), no DerivationFailed is recorded for want of room, SIGTERM would still stop
it; the tmpfs enlarged, everything resumes by itself and the read model ends equal to a
clean run's."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from eventsvc.server import EmbeddedNats
from tests.faults.common import (
    Up,
    clean_snapshot,
    event_counts,
    settled,
    shared_library,
    snapshot,
    wait_for,
)
from tests.faults.mounts import fill, remount, tmpfs

FILES = 100


def _thumbnails(up: Up) -> int:
    db = up.read_model()
    if db is None or not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
        try:
            return int(conn.execute("SELECT count(*) FROM thumbnails").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


async def test_a_full_data_dir_pauses_the_stages_and_they_resume_when_space_returns(
    tmp_path: Path,
) -> None:
    lib = shared_library(FILES)
    reference = await clean_snapshot(lib, tmp_path, FILES)
    with tmpfs(tmp_path / "data", "32m") as data, EmbeddedNats(tmp_path / "nats") as server:
        up = Up(lib, data, server, env={"EVENTSVC_MEDIA_CONCURRENCY": "1"}).start()
        try:
            wait_for(lambda: _thumbnails(up) >= 3, 60, "some thumbnails written")
            filler = fill(data)
            assert _thumbnails(up) < FILES, "ingest ended before the disk filled up"
            wait_for(lambda: up.status() == "degraded", 30, "/healthz says degraded")
            health = up.get("/healthz")
            assert any("space" in r or "full" in r for r in health["reasons"]), health
            await asyncio.sleep(5)  # full for a while: nothing recorded as failed, still alive
            assert up.alive, up.output()[-4000:]
            counts = await event_counts(server.url)
            assert counts.get("DerivationFailed", 0) == 0, counts
            remount(data, "size=64m")  # enlarged
            filler.unlink()
            wait_for(lambda: settled(up, FILES), 120, "the run settles once there is room")
            assert up.alive, up.output()[-4000:]
            up.terminate()
            got = await snapshot(up)
            assert got.diff(reference) == [], got.diff(reference)
        finally:
            up.kill()


async def test_a_full_disk_under_the_embedded_nats_store_too(tmp_path: Path) -> None:
    """The embedded server's JetStream store on the same full disk: publishes are
    refused ("insufficient resources"), JetStream may disable itself; `up` waits, and
    once there is room again (restarting its server if JetStream stays off) resumes."""
    lib = shared_library(FILES)
    reference = await clean_snapshot(lib, tmp_path, FILES)
    with tmpfs(tmp_path / "data", "48m") as data:
        up = Up(lib, data, None, env={"EVENTSVC_MEDIA_CONCURRENCY": "1"}).start()
        try:
            wait_for(lambda: (data / "nats" / "nats.url").exists(), 60, "its server runs")
            filler = fill(data)  # before (or while) the scan publishes
            wait_for(lambda: up.status() == "degraded", 30, "/healthz says degraded")
            await asyncio.sleep(8)
            assert up.alive, up.output()[-4000:]
            remount(data, "size=96m")
            filler.unlink()
            wait_for(lambda: settled(up, FILES), 120, "the run settles once there is room")
            assert up.alive, up.output()[-4000:]
            got = await snapshot(up)  # while up (and its server) runs
            up.terminate()
            assert got.events.get("DerivationFailed", 0) == 0, got.events
            assert got.diff(reference) == [], got.diff(reference)
        finally:
            up.kill()
