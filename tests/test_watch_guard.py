"""Deletions and moves-out seen by the watcher go through the mass-deletion guard as one
window (issue 13, item 2), on real directories and a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from eventsvc.core.events import FileMissing, LibraryOnline, LibraryStale
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library, Settings
from eventsvc.scanner import Scanner
from tests.harness import Pipeline, wait_until

OLD_NS = 1_600_000_000 * 10**9


def _library(tmp_path: Path, n: int) -> Library:
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(n):
        f = root / f"d{i % 5}" / f"{i:04d}.jpg"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"\xff\xd8" + i.to_bytes(4, "big"))
        os.utime(f, ns=(OLD_NS, OLD_NS))  # settled long ago
    return Library(id="lib", name="lib", root=root)


def _files(lib: Library) -> list[Path]:
    return sorted(lib.root.rglob("*.jpg"))


@contextlib.asynccontextmanager
async def _watching(
    event_log: EventLog, lib: Library, settings: Settings, **kw: object
) -> AsyncIterator[Scanner]:
    cfg = settings.model_copy(
        update={
            "watch": True,
            "quick_interval": 3600,
            "full_interval": 3600,
            "watch_delete_window": 1.0,
            "settle_seconds": 0.5,
            **kw,
        }
    )
    scanner = Scanner(event_log, [lib], cfg)
    stop = asyncio.Event()
    task = asyncio.create_task(scanner.run(stop))
    try:
        n = len(_files(lib))
        await wait_until(lambda: len(scanner.state.lib_files(lib.id)) == n, 20)
        # A library's watch is listed once every directory under it has its inotify watch.
        await wait_until(lambda: scanner.watcher and lib.id in scanner.watcher.watches, 10)
        yield scanner
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def _events(event_log: EventLog, etype: str) -> list[object]:
    return [e for _, e in await Pipeline(event_log, Settings(), []).events(etype)]


async def _remove_slowly(paths: list[Path], per_batch: int = 15) -> None:
    """os.remove in a loop, with pauses: inotify hands the deletions over in batches."""
    for i, p in enumerate(paths):
        os.remove(p)
        if i % per_batch == per_batch - 1:
            await asyncio.sleep(0.08)


async def test_deleting_most_of_a_watched_library_makes_it_stale_with_no_file_missing(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = _library(tmp_path, 300)
    async with _watching(event_log, lib, settings) as scanner:
        await _remove_slowly(_files(lib)[:180])
        await wait_until(lambda: _events(event_log, "LibraryStale"), 10)
        await asyncio.sleep(2.5)  # past the window: nothing is published late
        assert scanner.state.libraries[lib.id].state == "stale"
    assert await _events(event_log, "FileMissing") == []
    [stale] = await _events(event_log, "LibraryStale")
    assert isinstance(stale, LibraryStale) and "of 300 known files" in stale.reason


async def test_deleting_a_tenth_publishes_those_file_missing_and_stays_online(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = _library(tmp_path, 300)
    async with _watching(event_log, lib, settings) as scanner:
        gone = _files(lib)[:30]
        await _remove_slowly(gone)
        await wait_until(lambda: _count(event_log, "FileMissing", 30), 10)
        assert scanner.state.libraries[lib.id].state == "online"
    missing = await _events(event_log, "FileMissing")
    assert sorted(e.path for e in missing if isinstance(e, FileMissing)) == sorted(
        str(p.relative_to(lib.root)) for p in gone
    )
    assert await _events(event_log, "LibraryStale") == []


async def test_watched_deletions_keep_the_per_tick_cap(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = _library(tmp_path, 300)
    async with _watching(event_log, lib, settings, missing_cap=10) as scanner:
        await _remove_slowly(_files(lib)[:30])
        await wait_until(lambda: _count(event_log, "FileMissing", 10), 10)
        await asyncio.sleep(1.5)  # no tick comes: the rest waits for it
        assert len(await _events(event_log, "FileMissing")) == 10
        assert len(scanner.pending_missing[lib.id]) == 20
        await scanner.tick(full=False)  # each tick records up to the cap
        assert len(await _events(event_log, "FileMissing")) == 20


async def test_moving_most_files_out_of_the_root_makes_it_stale(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = _library(tmp_path, 63)
    away = tmp_path / "away"
    away.mkdir()
    async with _watching(event_log, lib, settings) as scanner:
        for p in _files(lib)[:44]:
            os.rename(p, away / p.name)  # IN_MOVED_FROM with no IN_MOVED_TO under the root
        await wait_until(lambda: _events(event_log, "LibraryStale"), 10)
        await asyncio.sleep(2.0)
        assert scanner.state.libraries[lib.id].state == "stale"
    assert await _events(event_log, "FileMissing") == []


async def test_a_few_files_or_a_folder_moved_out_are_missing_not_ghosts(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = _library(tmp_path, 63)
    away = tmp_path / "away"
    away.mkdir()
    async with _watching(event_log, lib, settings) as scanner:
        moved = _files(lib)[:4]
        for p in moved:
            os.rename(p, away / p.name)
        folder = lib.root / "d4"
        in_folder = sorted(folder.glob("*.jpg"))
        shutil.move(folder, away / "d4")  # a folder moved out: its files are gone too
        want = len(moved) + len(in_folder)
        await wait_until(lambda: _count(event_log, "FileMissing", want), 10)
        assert scanner.state.libraries[lib.id].state == "online"
    paths = {e.path for e in await _events(event_log, "FileMissing") if isinstance(e, FileMissing)}
    assert paths == {str(p.relative_to(lib.root)) for p in [*moved, *in_folder]}
    assert await _events(event_log, "LibraryStale") == []
    assert [e for e in await _events(event_log, "LibraryOnline") if isinstance(e, LibraryOnline)]


async def _count(event_log: EventLog, etype: str, want: int) -> bool:
    n = len(await _events(event_log, etype))
    assert n <= want, f"{n} {etype}, expected {want}"
    return n == want


async def test_folders_renamed_within_the_root_are_moves_not_a_mass_deletion(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = _library(tmp_path, 63)
    async with _watching(event_log, lib, settings) as scanner:
        before = {str(p.relative_to(lib.root)) for p in _files(lib)}
        for i in range(4):  # 4 of 5 folders (most of the library) get a new name
            os.rename(lib.root / f"d{i}", lib.root / f"renamed{i}")
        moved = {p for p in before if not p.startswith("d4/")}
        await wait_until(lambda: _count(event_log, "FileMissing", len(moved)), 10)
        assert scanner.state.libraries[lib.id].state == "online"
        now = {str(p.relative_to(lib.root)) for p in _files(lib)}
        assert set(scanner.state.lib_files(lib.id)) == {p.encode() for p in now}
    missing = {
        e.path for e in await _events(event_log, "FileMissing") if isinstance(e, FileMissing)
    }
    assert missing == moved
    assert await _events(event_log, "LibraryStale") == []
