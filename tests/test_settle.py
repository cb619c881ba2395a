"""Files still being written are published once, when they have settled (issue 13, item 1)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

from PIL import Image

from eventsvc.core.events import FileSeen, HashComputed
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library, Settings
from eventsvc.scanner import Scanner
from eventsvc.scanner.settle import Settling
from eventsvc.scanner.walk import WalkEntry
from tests.harness import Pipeline, running, wait_until

OLD_NS = 1_600_000_000 * 10**9


def _big_jpeg(seed: int = 1) -> bytes:
    """A JPEG of a few hundred kB (noise does not compress)."""
    img = Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _copy_in_chunks(data: bytes, dest: Path, chunks: int, seconds: float) -> None:
    """As a slow copy does: open, append, close, chunk after chunk (a close-write each)."""
    step = -(-len(data) // chunks)
    for i in range(0, len(data), step):
        with open(dest, "ab") as f:
            f.write(data[i : i + step])
        time.sleep(seconds / chunks)


def _settings(settings: Settings, **kw: object) -> Settings:
    base = {"quick_interval": 3600, "full_interval": 3600, "settle_seconds": 1.0}
    return settings.model_copy(update={**base, **kw})


@contextlib.asynccontextmanager
async def _scanning(scanner: Scanner) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(scanner.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def _events(event_log: EventLog, etype: str) -> list[object]:
    return [e for _, e in await Pipeline(event_log, Settings(), []).events(etype)]


async def test_a_jpeg_copied_in_chunks_into_a_watched_library_is_seen_and_hashed_once(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    lib = Library(id="lib", name="lib", root=root)
    cfg = _settings(settings, watch=True)
    data = _big_jpeg()
    async with running(Pipeline(event_log, cfg, [lib]), media=False) as p:
        async with _scanning(p.scanner):
            await wait_until(lambda: p.scanner.watcher and p.scanner.watcher.watches.get("lib"), 10)
            await asyncio.to_thread(_copy_in_chunks, data, root / "photo.jpg", 10, 3.0)
            seen = await wait_until(lambda: _events(event_log, "FileSeen"), 15)
            await wait_until(lambda: _events(event_log, "HashComputed"), 15)
            await asyncio.sleep(cfg.settle_seconds * 2 + 0.5)  # nothing more comes
            await p.settled()
            seen = await _events(event_log, "FileSeen")
            hashed = await _events(event_log, "HashComputed")
    assert [(e.path, e.size) for e in seen if isinstance(e, FileSeen)] == [("photo.jpg", len(data))]
    assert len(hashed) == 1 and isinstance(hashed[0], HashComputed)
    assert hashed[0].size == len(data)


async def test_a_tick_defers_a_file_being_written_until_it_settles(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    (root / "old.jpg").write_bytes(b"\xff\xd8old")
    os.utime(root / "old.jpg", ns=(OLD_NS, OLD_NS))
    lib = Library(id="lib", name="lib", root=root)
    scanner = Scanner(event_log, [lib], _settings(settings))
    await scanner.load()
    data = _big_jpeg()
    writer = threading.Thread(target=_copy_in_chunks, args=(data, root / "new.jpg", 8, 1.6))
    writer.start()
    try:

        def under_way() -> bool:
            with contextlib.suppress(FileNotFoundError):
                return 0 < (root / "new.jpg").stat().st_size < len(data)
            return False

        await wait_until(under_way, 10, 0.01)  # the copy is under way when the scan walks
        [report] = await scanner.tick(full=True)
    finally:
        await asyncio.to_thread(writer.join)
    seen = [e for e in await _events(event_log, "FileSeen") if isinstance(e, FileSeen)]
    assert sorted((e.path, e.size) for e in seen) == [("new.jpg", len(data)), ("old.jpg", 5)]
    assert report.unsettled == 0 and report.new == 2


def test_settling_rules() -> None:
    s = Settling(2.0)
    now_ns, now = time.time_ns(), time.monotonic()
    old = WalkEntry(b"old.jpg", 10, OLD_NS, "image")
    assert s.settled(old, now_ns, now)  # an old mtime has settled: no wait
    young = WalkEntry(b"young.jpg", 10, now_ns - 10**8, "image")
    assert not s.settled(young, now_ns, now)
    assert not s.settled(young, now_ns + 10**9, now + 1.0)  # unchanged, not long enough
    grown = young._replace(size=20, mtime_ns=now_ns + 10**9)
    assert not s.settled(grown, now_ns + 10**9, now + 1.0)  # changed: waits again
    assert s.settled(grown, now_ns + 3 * 10**9 + 1, now + 3.0)  # 2 s after its mtime
    # An mtime in the future (a clock-skewed mount) settles once seen unchanged long enough.
    ahead = WalkEntry(b"ahead.jpg", 5, now_ns + 3600 * 10**9, "image")
    assert not s.settled(ahead, now_ns, now)
    assert s.due_in() is not None and s.due_in() <= 2.0
    assert not s.settled(ahead, now_ns + 10**9, now + 1.0)
    assert s.settled(ahead, now_ns + 2 * 10**9, now + 2.0)
    assert s.due_in() is None and len(s) == 0
    assert Settling(0).settled(young, now_ns, now)  # 0 turns settling off
