"""The scanner on real directories and a real nats-server."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.scanner import Scanner
from eventsvc.scanner.walk import Excludes
from tests.harness import Pipeline, make_jpeg, make_video, wait_until


async def _types(event_log: EventLog) -> list[str]:
    p = Pipeline(event_log, Settings(), [])
    return [e.type for _, e in await p.events()]


async def test_first_scan_publishes_media_only_and_respects_excludes(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    make_jpeg(lib / "2023" / "a.jpg")
    make_jpeg(lib / "2023" / "deep" / "b.JPG", 1)
    make_video(lib / "clip.mp4")
    make_jpeg(lib / "@eaDir" / "thumb.jpg", 2)  # default exclude
    make_jpeg(lib / "private" / "x.jpg", 3)  # library exclude
    make_jpeg(lib / "2023" / "skip.tmp.jpg", 4)  # global exclude from TOML
    (lib / "notes.txt").write_text("not media")
    cfg = tmp_path / "libs.toml"
    cfg.write_text(
        f'exclude = ["skip.*"]\n[[library]]\nid = "main"\nroot = "{lib}"\nexclude = ["private"]\n'
    )
    libs, extra = load_libraries([], cfg)
    scanner = Scanner(event_log, libs, settings, extra_excludes=extra)
    await scanner.load()
    [report] = await scanner.tick(full=True)
    assert report.new == 3 and report.state == "online"
    seen = sorted(e.path for _, e in await Pipeline(event_log, settings, libs).events("FileSeen"))
    assert seen == ["2023/a.jpg", "2023/deep/b.JPG", "clip.mp4"]
    # Nothing changed: a second scan publishes nothing.
    last = await event_log.last_seq()
    [again] = await scanner.tick(full=True)
    assert (again.new, again.changed, again.missing) == (0, 0, 0)
    assert await event_log.last_seq() == last


async def test_state_is_rebuilt_from_the_log(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    for i in range(5):
        make_jpeg(lib / f"{i}.jpg", i)
    libs, _ = load_libraries([str(lib)])
    first = Scanner(event_log, libs, settings)
    await first.load()
    await first.tick(full=True)
    (lib / "0.jpg").unlink()
    await first.tick(full=True)
    last = await event_log.last_seq()
    # A new scanner process knows what the first one published, deletions included.
    second = Scanner(event_log, libs, settings)
    await second.load()
    [r] = await second.tick(full=True)
    assert (r.new, r.changed, r.missing) == (0, 0, 0)
    assert await event_log.last_seq() == last
    make_jpeg(lib / "0.jpg", 0)  # it comes back: seen again
    [r] = await second.tick(full=False)
    assert r.new == 1


async def test_changed_file_is_seen_again(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    f = make_jpeg(lib / "a.jpg")
    libs, _ = load_libraries([str(lib)])
    s = Scanner(event_log, libs, settings)
    await s.load()
    await s.tick(full=True)
    make_jpeg(f, 9, size=(100, 100))
    os.utime(f, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    [r] = await s.tick(full=False)
    assert r.changed == 1 and r.new == 0


async def test_odd_names_loops_unreadable_dirs_are_reported_not_fatal(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    make_jpeg(lib / "ok.jpg")
    raw = os.path.join(os.fsencode(lib), b"caf\xe9 \xff.jpg")
    with open(raw, "wb") as f:
        f.write(b"bytes")
    make_jpeg(lib / "sp ace & ünï *?.jpg", 2)
    os.symlink(lib, lib / "loop")  # a symlink loop
    locked = lib / "locked"
    make_jpeg(locked / "hidden.jpg", 3)
    os.chmod(locked, 0)
    try:
        libs, _ = load_libraries([str(lib)])
        s = Scanner(event_log, libs, settings)
        await s.load()
        [r] = await s.tick(full=True)
    finally:
        os.chmod(locked, 0o755)
    events = [e for _, e in await Pipeline(event_log, settings, libs).events("FileSeen")]
    paths = {e.path_bytes() for e in events}
    assert b"ok.jpg" in paths and b"caf\xe9 \xff.jpg" in paths
    assert "sp ace & ünï *?.jpg".encode() in paths
    assert r.state == "online"
    assert any("loop" in i for i in r.issues)
    if os.geteuid() != 0:  # root reads everything
        assert any("locked" in i for i in r.issues)
    assert all(not e.path.startswith("loop/") for e in events)


async def test_missing_root_is_stale_not_missing(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    for i in range(3):
        make_jpeg(lib / f"{i}.jpg", i)
    libs, _ = load_libraries([str(lib)])
    s = Scanner(event_log, libs, settings)
    await s.load()
    await s.tick(full=True)
    lib.rename(tmp_path / "away")
    for _ in range(3):
        [r] = await s.tick(full=True)
        assert r.state == "stale" and "does not exist" in (r.error or "")
    lib.mkdir()  # an empty mount point: still stale
    [r] = await s.tick(full=True)
    assert r.state == "stale" and "empty" in (r.error or "")
    lib.rmdir()
    (tmp_path / "away").rename(lib)
    [r] = await s.tick(full=True)
    assert r.state == "online" and (r.new, r.missing) == (0, 0)
    types = await _types(event_log)
    assert "FileMissing" not in types
    assert types.count("LibraryStale") == 1 and types.count("LibraryOnline") == 2


async def test_mass_disappearance_is_stale_and_deletes_are_capped(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    for i in range(20):
        make_jpeg(lib / "d" / f"{i}.jpg", i)
    make_jpeg(lib / "keep.jpg", 99)
    libs, _ = load_libraries([str(lib)])
    s = Scanner(event_log, libs, settings.model_copy(update={"missing_cap": 4}))
    await s.load()
    await s.tick(full=True)
    shutil.rmtree(lib / "d")  # 20 of 21 gone at once: looks like a failed mount
    [r] = await s.tick(full=True)
    assert r.state == "stale" and "20 of 21" in (r.error or "")
    [r] = await s.tick(full=False)  # a quick tick does not flap it back online
    assert r.state == "stale"
    assert "FileMissing" not in await _types(event_log)
    assert (await _types(event_log)).count("LibraryStale") == 1
    # The user confirms: deletions are published, at most missing_cap per tick.
    [r] = await s.tick(full=True, accept_missing=True)
    assert r.state == "online" and r.missing == 4 and r.missing_deferred == 16
    counts = [r.missing]
    while sum(counts) < 20:
        [r] = await s.tick(full=False)
        assert r.missing <= 4
        counts.append(r.missing)
    assert (await _types(event_log)).count("FileMissing") == 20


async def test_a_few_deletions_are_published(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    for i in range(12):
        make_jpeg(lib / f"{i}.jpg", i)
    libs, _ = load_libraries([str(lib)])
    s = Scanner(event_log, libs, settings)
    await s.load()
    await s.tick(full=True)
    (lib / "3.jpg").unlink()
    [r] = await s.tick(full=False)
    assert r.missing == 0  # quick scans never delete
    [r] = await s.tick(full=True)
    assert r.missing == 1


async def test_watch_publishes_a_new_file_without_waiting_for_a_scan(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    make_jpeg(lib / "first.jpg")
    libs, _ = load_libraries([str(lib)])
    # Scans an hour apart: within the test's timeout only the watcher can find the new file.
    cfg = settings.model_copy(update={"quick_interval": 3600, "full_interval": 7200, "watch": True})
    s = Scanner(event_log, libs, cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(s.run(stop))
    try:
        await _wait_for_seen(event_log, settings, libs, "first.jpg", 30)

        def watching() -> bool:  # the watcher is set up after the first tick
            st = s.watcher.status.get(libs[0].id) if s.watcher is not None else None
            return st is not None and st.state == "watching"

        await wait_until(watching, 30, 0.02)
        make_jpeg(lib / "sub" / "new.jpg", 5)
        await _wait_for_seen(event_log, settings, libs, "sub/new.jpg", 30)
        assert not task.done(), "the scanner stopped"
    finally:
        stop.set()
        await task


async def _wait_for_seen(
    event_log: EventLog, settings: Settings, libs: list, path: str, timeout: float
) -> None:  # type: ignore[type-arg]
    async def seen() -> bool:
        evs = await Pipeline(event_log, settings, libs).events("FileSeen")
        return any(e.path == path for _, e in evs)

    await wait_until(seen, timeout)


@pytest.mark.parametrize(
    ("pattern", "rel", "hit"),
    [
        ("@eaDir", "a/@eaDir", True),
        ("*.tmp", "x/y.tmp", True),
        ("private/**", "private/a/b.jpg", True),
        ("**/cache/*", "a/b/cache/c.jpg", True),
        ("**/cache/*", "a/b/cached/c.jpg", False),
        ("2020/*/raw", "2020/x/raw", True),
        ("2020/*/raw", "2021/x/raw", False),
    ],
)
def test_excludes(pattern: str, rel: str, hit: bool) -> None:
    ex = Excludes([pattern])
    got = ex.path(rel) or any(ex.name(part) for part in rel.split("/"))
    assert got is hit
