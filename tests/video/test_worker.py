"""The playlist worker in the pipeline (real nats-server, SQLite) and the /videos API."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from eventsvc.components import make_worker
from eventsvc.core.events import DerivationFailed
from eventsvc.core.layout import playlist_dir
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.video import hls
from projections.app import create_app
from tests.harness import Pipeline, b3, make_jpeg, running
from tests.video.media import make


def _settings(settings: Settings, **kw: object) -> Settings:
    return settings.model_copy(
        update={"video_preset": "ultrafast", "video_segment_seconds": 1.0, **kw}
    )


async def test_worker_publishes_playlists_and_the_api_serves_them(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    settings = _settings(settings)
    lib = tmp_path / "lib"
    good = make(lib / "good.mp4", seconds=3, gop=10)
    avi = make(lib / "old.avi", seconds=2, vcodec="mpeg4", audio="mp3")
    data = make(tmp_path / "x.mp4", seconds=3).read_bytes()
    (lib / "broken.mp4").write_bytes(data[: len(data) // 2])
    photo = make_jpeg(lib / "photo.jpg")
    libs, _ = load_libraries([str(lib)])
    async with running(Pipeline(event_log, settings, libs), workers=("playlist",)) as p:
        await p.scanner.tick(full=True)
        await p.settled(timeout=60)
        ready = {e.content_hash: e for _, e in await p.events("PlaylistReady")}
        assert set(ready) == {b3(good), b3(avi)}
        assert ready[b3(good)].mode == "remux" and ready[b3(avi)].mode == "transcode"
        fails = [
            e for _, e in await p.events("DerivationFailed") if e.stage == "playlist"
        ]  # fmt: skip
        assert [(f.content_hash, f.permanent) for f in fails] == [(b3(lib / "broken.mp4"), True)]
        stats = p.workers["playlist"].stats
        assert (stats.remuxed, stats.transcoded, stats.failed) == (1, 1, 1)
        # Another location of the same content: derived once.
        shutil.copy2(good, lib / "copy.mp4")
        await p.scanner.tick(full=True)
        await p.settled(timeout=60)
        assert len(await p.events("PlaylistReady")) == 2
        conn = p.db()
        try:
            row = conn.execute(
                "SELECT mode, segments, codecs FROM playlists WHERE content_hash = ?", (b3(good),)
            ).fetchone()
        finally:
            conn.close()
        assert tuple(row) == ("remux", 3, ready[b3(good)].codecs)
        g = ready[b3(good)]
        assert g.playlist_path == f"{b3(good)[:2]}/{b3(good)}/index.m3u8"
        assert g.poster and g.preview

        app = create_app(settings, event_log=event_log)
        async with AsyncTestClient(app, base_url="http://127.0.0.1") as c:
            h = b3(good)
            r = await c.get(f"/videos/{h}/index.m3u8")
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
            pl = hls.parse(r.text)
            assert len(pl.segments) == 3 and pl.init == "init.mp4"
            seg = pl.segments[0][0]
            full = await c.get(f"/videos/{h}/{seg}")
            assert full.status_code == 200
            assert full.headers["content-type"] == "video/iso.segment"
            part = await c.get(f"/videos/{h}/{seg}", headers={"Range": "bytes=4-15"})
            assert part.status_code == 206 and part.content == full.content[4:16]
            assert part.headers["content-range"] == f"bytes 4-15/{len(full.content)}"
            init = await c.get(f"/videos/{h}/init.mp4")
            assert init.status_code == 200 and init.headers["content-type"] == "video/mp4"
            poster = await c.get(f"/videos/{h}/poster.jpg")
            assert poster.headers["content-type"] == "image/jpeg"
            assert poster.content[:2] == b"\xff\xd8"
            prev = await c.get(f"/videos/{h}/preview.mp4")
            assert prev.status_code == 200 and prev.headers["content-type"] == "video/mp4"
            info = (await c.get(f"/videos/{h}")).json()
            assert info["state"] == "ready" and info["mode"] == "remux" and info["segments"] == 3

            async def state(content_hash: str, name: str = "index.m3u8") -> dict:  # type: ignore[type-arg]
                r = await c.get(f"/videos/{content_hash}/{name}")
                assert r.status_code == 404, r.text
                return r.json()  # type: ignore[no-any-return]

            broken = await state(b3(lib / "broken.mp4"))
            assert broken["state"] == "failed"
            assert "cannot open" in broken["reason"] or "truncated" in broken["reason"]
            assert (await state(b3(photo)))["state"] == "not_video"
            assert (await state("ab" * 32))["state"] == "unknown"
            missing = await state(h, "seg_00099.m4s")
            assert missing["state"] == "ready" and "missing" in missing["detail"]
            (lib / "secret.txt").write_text("not for you")
            sneaky = f"..%2F..%2F..%2F{lib.name}%2Fsecret.txt"
            for name in (sneaky, "index.m3u8.bak", "x.jpg", "seg_1.m4s"):
                r = await c.get(f"/videos/{h}/{name}")
                assert r.status_code in (400, 404) and "not for you" not in r.text
            assert (await c.get(f"/videos/{'z' * 64}/index.m3u8")).status_code == 400


async def test_pending_then_timeout_is_recorded_as_transient(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    settings = _settings(settings, playlist_timeout=0.3, video_preset="veryslow",
                         video_max_height=480)  # fmt: skip
    lib = tmp_path / "lib"
    big = make(lib / "big.avi", seconds=20, size="640x480", rate=25, vcodec="mpeg4", audio=None)
    libs, _ = load_libraries([str(lib)])
    async with running(Pipeline(event_log, settings, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled(timeout=30)
        app = create_app(settings, event_log=event_log)
        # no playlist worker ran yet: pending
        async with AsyncTestClient(app, base_url="http://127.0.0.1") as c:
            r = await c.get(f"/videos/{b3(big)}/index.m3u8")
            assert r.status_code == 404 and r.json()["state"] == "pending"
    async with running(Pipeline(event_log, settings, libs), workers=("playlist",)) as p:
        await p.settled(timeout=60)
        [(_, failed)] = [
            (s, e) for s, e in await p.events("DerivationFailed") if e.stage == "playlist"
        ]
        assert isinstance(failed, DerivationFailed)
        assert failed.permanent is False and "job limit" in failed.reason
        assert not await p.events("PlaylistReady")
        target = playlist_dir(settings.videos_dir, b3(big))
        assert not target.exists() and list(target.parent.iterdir()) == []


async def test_without_ffmpeg_the_worker_says_why_and_does_nothing(
    tmp_path: Path, event_log: EventLog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
    lib = tmp_path / "lib"
    make(lib / "good.mp4", seconds=1)
    libs, _ = load_libraries([str(lib)])
    w = await make_worker("playlist", event_log, settings, libs)
    assert w.stats.disabled and "no-such-ffmpeg" in w.stats.disabled
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    async with running(Pipeline(event_log, settings, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled()
        await asyncio.sleep(0.5)
        assert not task.done()  # idles, no crash loop
        assert not await p.events("PlaylistReady") and not [
            e for _, e in await p.events("DerivationFailed") if e.stage == "playlist"
        ]
        names = [ci.name for ci in await event_log.js.consumers_info(settings.stream)]
        assert "playlist" not in names  # it consumes nothing: a later install starts fresh
    stop.set()
    await asyncio.wait_for(task, 5)
    assert vars(w.stats)["disabled"] == w.stats.last_error


async def test_the_poster_frame_is_decoded_in_the_decode_sandbox(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    """The worker's poster goes through the decode sandbox: with a pixel budget smaller
    than the frame, the decoder refuses it (an in-process decode would not) and the video
    is recorded as failed, naming the budget; nothing is published as ready."""
    settings = _settings(settings, decode_max_pixels=1000)
    lib = tmp_path / "lib"
    video = make(lib / "clip.mp4", seconds=2, gop=10)
    libs, _ = load_libraries([str(lib)])
    async with running(
        Pipeline(event_log, settings, libs), media=False, workers=("playlist",)
    ) as p:
        await p.scanner.tick(full=True)
        await p.settled(timeout=60)
        assert await p.events("PlaylistReady") == []
        [fail] = [e for _, e in await p.events("DerivationFailed") if e.stage == "playlist"]
        assert fail.content_hash == b3(video) and fail.permanent
        assert "poster" in fail.reason
        assert not playlist_dir(settings.videos_dir, b3(video)).exists()
