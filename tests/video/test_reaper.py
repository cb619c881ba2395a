"""The guarded orphan clean-up: two healthy ticks, a stale library stops it, only the
exact shapes we write are removed, strays and symlinks survive, the per-tick cap."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from litestar.testing import AsyncTestClient

from eventsvc.core.events import NotDuplicate
from eventsvc.core.layout import playlist_dir
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library, Settings, load_libraries
from eventsvc.video.reaper import Reaper, sweep
from projections import readmodel
from projections.app import create_app
from projections.projector import rebuild
from tests.harness import Pipeline, b3, make_jpeg, make_video, running, wait_until


def _hash(n: int) -> str:
    return f"{n:02x}" + f"{n:062x}"


def _playlist(root: Path, h: str) -> Path:
    d = playlist_dir(root, h)
    d.mkdir(parents=True)
    (d / "index.m3u8").write_text("#EXTM3U\n")
    return d


def _strays(root: Path, outside: Path) -> list[Path]:
    """Things an operator may have left under the video root: none match our shapes."""
    h = _hash(7)
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    made = [
        root / "notes",  # not a shard
        root / "AB" / h.upper(),  # upper case
        root / "ab" / "not-a-hash",
        root / "cd" / _hash(0xAB),  # a hash in the wrong shard
        root / "ab" / (h[:-1]),  # 63 hex
        root / "ab" / ".tmp-short",
    ]
    for d in made:
        d.mkdir(parents=True)
        (d / "x").write_text("operator's")
    # A symlink shaped like a hash dir, and a file shaped like one.
    link = root / "ab" / ("ab" + "0" * 62)
    os.symlink(outside, link)
    (root / "ab" / ("ab" + "1" * 62)).write_text("a file, not a dir")
    made += [link, root / "ab" / ("ab" + "1" * 62)]
    return made


def test_sweep_removes_only_exact_shapes(tmp_path: Path) -> None:
    root = tmp_path / "videos"
    live, orphan, orphan2 = _hash(1), _hash(2), _hash(3)
    for h in (live, orphan, orphan2):
        _playlist(root, h)
    strays = _strays(root, tmp_path / "outside")
    old_tmp = root / live[:2] / f".tmp-{live}-0123456789ab"
    new_tmp = root / orphan[:2] / f".tmp-{orphan}-0123456789ab"
    for t in (old_tmp, new_tmp):
        t.mkdir()
        (t / "seg_00000.m4s").write_bytes(b"x")
    os.utime(old_tmp, (time.time() - 7200, time.time() - 7200))
    r = sweep(root, {live}, max_remove=1, tmp_max_age=3600)
    assert r.inspected == 3 and r.removed + r.tmp_removed == 1  # the per-tick cap
    assert r.deferred == 2 - r.removed
    r2 = sweep(root, {live}, max_remove=100, tmp_max_age=3600)
    r3 = sweep(root, {live}, max_remove=100, tmp_max_age=3600)
    assert r.removed + r.tmp_removed + r2.removed + r2.tmp_removed == 3  # 2 orphans + old tmp
    assert (r3.removed, r3.tmp_removed, r3.errors) == (0, 0, 0)
    assert playlist_dir(root, live).is_dir() and new_tmp.is_dir() and not old_tmp.exists()
    assert not playlist_dir(root, orphan).exists() and not playlist_dir(root, orphan2).exists()
    for s in strays:
        assert s.exists() or s.is_symlink(), s
    assert (tmp_path / "outside" / "keep.txt").read_text() == "precious"
    assert not (root / orphan2[:2]).exists()  # its emptied shard went too


async def test_reaper_needs_two_healthy_ticks(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    video = make_video(lib / "clip.mp4")
    gone = tmp_path / "unmounted"
    libs, _ = load_libraries([str(lib)])
    libs.append(Library(id="usb", name="usb", root=gone))
    root = settings.videos_dir
    live, orphan = b3(video), _hash(9)
    _playlist(root, live)
    _playlist(root, orphan)
    stray = _strays(root, tmp_path / "outside")
    async with running(Pipeline(event_log, settings, libs), media=False) as p:
        await p.scanner.tick(full=True)  # 'usb' has no root: LibraryStale
        await p.settled()
        reaper = Reaper(root, event_log, libs)
        for _ in range(3):  # one library stale: nothing, however often
            assert await reaper.tick() is None
        assert "usb" in reaper.stats["last_skip"]
        assert playlist_dir(root, orphan).is_dir()

        gone.mkdir()
        make_video(gone / "other.mp4")
        await p.scanner.tick(full=True)  # both online now
        await p.settled()
        assert await reaper.tick() is None  # first healthy tick: waits for a second
        assert "next" in reaper.stats["last_skip"]
        assert playlist_dir(root, orphan).is_dir()
        report = await reaper.tick()
        assert report is not None and (report.inspected, report.removed) == (2, 1)
        assert not playlist_dir(root, orphan).exists() and playlist_dir(root, live).is_dir()
        assert all(s.exists() or s.is_symlink() for s in stray)
        assert reaper.stats["removed"] == 1 and reaper.stats["runs"] == 1


async def test_a_stale_spell_between_ticks_restarts_the_count(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    live = b3(make_video(lib / "clip.mp4"))
    libs, _ = load_libraries([str(lib)])
    root = settings.videos_dir
    orphan = _hash(5)
    _playlist(root, orphan)
    _playlist(root, live)
    async with running(Pipeline(event_log, settings, libs), media=False) as p:
        await p.scanner.tick(full=True)
        await p.settled()
        reaper = Reaper(root, event_log, libs)
        assert await reaper.tick() is None
        # The library goes away and comes back between two clean-up ticks.
        hidden = tmp_path / "hidden"
        lib.rename(hidden)
        await p.scanner.tick(full=True)
        hidden.rename(lib)
        await p.scanner.tick(full=True)
        await p.settled()
        assert await reaper.tick() is None  # online now, but not since the last tick
        assert playlist_dir(root, orphan).is_dir()
        assert reaper.stats["runs"] == 0
        # The reaper folds the log itself: with the projector stopped and no read model
        # at all, its next healthy tick still tells the live content from the orphan.
        await p.stop()
        await event_log.publish(NotDuplicate(a=_hash(1), b=_hash(2)))  # the log moves on
        moved = await event_log.last_seq()
        shutil.rmtree(settings.readmodel_dir)
        report = await reaper.tick()
        assert report is not None and (report.inspected, report.removed) == (2, 1)
        assert not playlist_dir(root, orphan).exists() and playlist_dir(root, live).is_dir()
        assert reaper.state.seq == moved  # folded up to the log's end at the tick's start


async def test_the_worker_runs_the_clean_up_and_reports_it(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    settings = settings.model_copy(update={"playlist_cleanup_interval": 0.3})
    lib = tmp_path / "lib"
    make_video(lib / "clip.mp4")
    libs, _ = load_libraries([str(lib)])
    orphan = _hash(6)
    _playlist(settings.videos_dir, orphan)
    async with running(
        Pipeline(event_log, settings, libs), media=False, workers=("playlist",)
    ) as p:
        await p.scanner.tick(full=True)
        await p.settled(timeout=60)
        await wait_until(lambda: not playlist_dir(settings.videos_dir, orphan).exists(), 20)
        cleanup = vars(p.workers["playlist"].stats)["cleanup"]  # what /pipeline shows
        assert cleanup["runs"] >= 1 and cleanup["removed"] == 1 and cleanup["errors"] == 0
        assert cleanup["inspected"] >= 1
        await wait_until(lambda: cleanup["runs"] >= 2, 10)  # a later run keeps the live one
        assert playlist_dir(settings.videos_dir, b3(lib / "clip.mp4")).is_dir()


async def test_a_removal_is_an_event_and_a_returning_video_gets_its_playlist_back(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    settings = settings.model_copy(
        update={"playlist_cleanup_interval": 0.3, "video_preset": "ultrafast"}
    )
    lib = tmp_path / "lib"
    clip = make_video(lib / "clip.mp4")
    make_jpeg(lib / "photo.jpg")  # an empty library root looks unmounted: it stays stale
    h = b3(clip)
    away = tmp_path / "away.mp4"
    libs, _ = load_libraries([str(lib)])
    async with (
        running(Pipeline(event_log, settings, libs), media=False, workers=("playlist",)) as p,
        AsyncTestClient(create_app(settings), base_url="http://127.0.0.1") as api,
    ):
        await p.scanner.tick(full=True)
        await p.settled(timeout=60)
        assert (await api.get(f"/videos/{h}")).json()["state"] == "ready"

        # The file leaves: two healthy ticks later the playlist goes, and the log says so.
        clip.rename(away)
        await p.scanner.tick(full=True)
        await p.settled(timeout=60)
        await wait_until(lambda: not playlist_dir(settings.videos_dir, h).exists(), 20)
        removed = [e for _, e in await p.events("PlaylistRemoved")]
        assert [e.content_hash for e in removed] == [h]
        await wait_until(lambda: _state(p, h) is None, 20)  # projected: no playlist row
        r = await api.get(f"/videos/{h}")
        assert r.status_code == 200 and r.json()["state"] == "removed"
        r = await api.get(f"/videos/{h}/index.m3u8")
        assert r.status_code == 404 and r.json()["state"] == "removed"

        # It comes back: the playlist is made again, a new PlaylistReady, served.
        away.rename(clip)
        await p.scanner.tick(full=True)
        await p.settled(timeout=60)
        await wait_until(lambda: _state(p, h) is not None, 60)
        assert len(await p.events("PlaylistReady")) == 2
        assert (await api.get(f"/videos/{h}")).json()["state"] == "ready"
        r = await api.get(f"/videos/{h}/index.m3u8")
        assert r.status_code == 200 and r.text.startswith("#EXTM3U")

        # Replaying the log gives the same rows as applying it live.
        conn = p.db()
        live = readmodel.dump(conn)
        conn.close()
        path, _ = await rebuild(event_log, settings.readmodel_dir)
        conn = readmodel.open_reader(path)
        assert readmodel.dump(conn) == live
        conn.close()


def _state(p: Pipeline, h: str) -> tuple[int] | None:
    conn = p.db()
    try:
        return conn.execute("SELECT seq FROM playlists WHERE content_hash = ?", (h,)).fetchone()
    finally:
        conn.close()
