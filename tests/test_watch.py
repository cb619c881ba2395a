"""File watching (inotify per library) on real directories and a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventsvc.core.events import FileSeen
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Library, Settings
from eventsvc.scanner import Scanner
from eventsvc.scanner.walk import Excludes
from eventsvc.scanner.watch import WHOLE_LIBRARY, Watcher, WatchStatus
from projections.app import create_app
from projections.projector import Projector
from tests.harness import Pipeline, make_jpeg, wait_until


def _jpeg_bytes(tmp_path: Path, seed: int) -> bytes:
    return make_jpeg(tmp_path / "src" / f"{seed}.jpg", seed).read_bytes()


def _write_bytes_path(path: bytes, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _inotify_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                n += 1
    return n


def _watch_settings(settings: Settings) -> Settings:
    # No tick comes during a test: what is seen after the first scan comes through inotify.
    return settings.model_copy(
        update={"quick_interval": 3600, "watch": True, "watch_retry": 0.2, "watch_retry_max": 0.5}
    )


async def _seen(event_log: EventLog, library_id: str) -> dict[bytes, FileSeen]:
    evs = await Pipeline(event_log, Settings(), []).events("FileSeen")
    return {e.path_bytes(): e for _, e in evs if e.library_id == library_id}


async def _wait_seen(event_log: EventLog, library_id: str, rel: bytes, timeout: float) -> float:
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def seen() -> bool:
        return rel in await _seen(event_log, library_id)

    await wait_until(seen, timeout, step=0.05)
    return loop.time() - t0


@contextlib.asynccontextmanager
async def _scanning(scanner: Scanner) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(scanner.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _watching(scanner: Scanner, *ids: str) -> None:
    def ok() -> bool:
        w = scanner.watcher
        return w is not None and all(
            (st := w.status.get(i)) is not None and st.state == "watching" for i in ids
        )

    await wait_until(ok, 10, step=0.02)


def _libs(tmp_path: Path, *ids: str) -> list[Library]:
    out = []
    for i in ids:
        root = tmp_path / i
        root.mkdir(parents=True, exist_ok=True)
        out.append(Library(id=i, name=i.title(), root=root))
    return out


async def test_a_non_utf8_name_does_not_stop_watching(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    alpha, beta = _libs(tmp_path, "alpha", "beta")
    a_root = os.fsencode(alpha.root)
    _write_bytes_path(a_root + b"/caf\xe9.jpg", _jpeg_bytes(tmp_path, 1))
    make_jpeg(beta.root / "first.jpg", 2)
    scanner = Scanner(event_log, [alpha, beta], _watch_settings(settings))
    async with _scanning(scanner):
        await _wait_seen(event_log, "alpha", b"caf\xe9.jpg", 10)  # the first (full) scan
        await _wait_seen(event_log, "beta", b"first.jpg", 10)
        await _watching(scanner, "alpha", "beta")
        # Another library's new file, a new non-UTF-8 file and directory: all through inotify.
        make_jpeg(beta.root / "new.jpg", 3)
        assert await _wait_seen(event_log, "beta", b"new.jpg", 5) < 3
        _write_bytes_path(a_root + b"/na\xefve.jpg", _jpeg_bytes(tmp_path, 4))
        os.mkdir(a_root + b"/d\xff")
        _write_bytes_path(a_root + b"/d\xff/x\x80.jpg", _jpeg_bytes(tmp_path, 5))
        assert await _wait_seen(event_log, "alpha", b"na\xefve.jpg", 5) < 3
        assert await _wait_seen(event_log, "alpha", b"d\xff/x\x80.jpg", 5) < 3
        assert scanner.watcher is not None
        assert scanner.watcher.status["alpha"].state == "watching"
    seen = await _seen(event_log, "alpha")
    odd = seen[b"na\xefve.jpg"]
    assert odd.raw_path is not None and "\ufffd" in odd.path  # shown replaced, kept exact
    assert odd.size == len(_jpeg_bytes(tmp_path, 4))
    # Stopping says so.
    assert scanner.watcher.status["alpha"].state == "off"


async def test_new_directories_are_watched_and_moved_out_ones_are_not(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    [lib] = _libs(tmp_path, "alpha")
    make_jpeg(lib.root / "first.jpg")
    outside = tmp_path / "outside"
    make_jpeg(outside / "incoming" / "in.jpg", 1)
    make_jpeg(outside / "target" / "t.jpg", 2)
    (lib.root / "link").symlink_to(outside / "target", target_is_directory=True)
    scanner = Scanner(event_log, [lib], _watch_settings(settings))
    async with _scanning(scanner):
        await _wait_seen(event_log, "alpha", b"first.jpg", 10)
        await _watching(scanner, "alpha")
        # Nested directories made after the start, a file at once in the deepest one.
        deep = lib.root / "2024" / "05" / "trip"
        deep.mkdir(parents=True)
        make_jpeg(deep / "a.jpg", 3)
        await _wait_seen(event_log, "alpha", b"2024/05/trip/a.jpg", 5)
        # A later file in it proves the new directory is watched itself.
        make_jpeg(deep / "b.jpg", 4)
        await _wait_seen(event_log, "alpha", b"2024/05/trip/b.jpg", 5)
        # A directory moved in from outside, with what it holds.
        os.rename(outside / "incoming", lib.root / "incoming")
        await _wait_seen(event_log, "alpha", b"incoming/in.jpg", 5)
        make_jpeg(lib.root / "incoming" / "later.jpg", 5)
        await _wait_seen(event_log, "alpha", b"incoming/later.jpg", 5)
        # Excluded directories are not watched.
        make_jpeg(lib.root / "@eaDir" / "thumb.jpg", 6)
        # Moved out of the root: no longer watched.
        os.rename(lib.root / "incoming", outside / "gone")
        await wait_until(
            lambda: b"incoming" not in scanner.watcher.watches["alpha"].dirs, 10, step=0.02
        )
        make_jpeg(outside / "gone" / "after.jpg", 7)
        make_jpeg(outside / "target" / "via-link.jpg", 8)  # through the symlinked directory
        make_jpeg(lib.root / "marker.jpg", 9)  # handled after the ones above
        await _wait_seen(event_log, "alpha", b"marker.jpg", 5)
        await asyncio.sleep(0.5)
        assert scanner.watcher is not None
        dirs = set(scanner.watcher.watches["alpha"].dirs)
    assert dirs == {b"", b"2024", b"2024/05", b"2024/05/trip"}
    seen = await _seen(event_log, "alpha")
    assert not any(b"eaDir" in p or b"after" in p or b"via-link" in p for p in seen)


@contextlib.asynccontextmanager
async def _api(settings: Settings, event_log: EventLog) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, event_log=event_log)
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


async def test_one_library_failing_leaves_the_others_watching_and_comes_back(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    alpha, beta = _libs(tmp_path, "alpha", "beta")
    make_jpeg(alpha.root / "a1.jpg", 1)
    make_jpeg(beta.root / "b1.jpg", 2)
    s = _watch_settings(settings)
    scanner = Scanner(event_log, [alpha, beta], s)
    stop = asyncio.Event()
    projector = Projector(event_log, s.readmodel_dir, batch=100)
    proj = asyncio.create_task(projector.run(stop))
    try:
        async with _scanning(scanner), _api(s, event_log) as api:
            await _wait_seen(event_log, "alpha", b"a1.jpg", 10)
            await _watching(scanner, "alpha", "beta")

            async def watch_of(lib_id: str) -> dict[str, Any] | None:
                r = await api.get("/libraries")
                assert r.status_code == 200, r.text
                items = {i["library_id"]: i for i in r.json()["items"]}
                return items[lib_id]["watch"] if lib_id in items else None

            async def state_is(lib_id: str, state: str) -> dict[str, Any] | None:
                w = await watch_of(lib_id)
                return w if w is not None and w["state"] == state else None

            w = await wait_until(lambda: state_is("alpha", "watching"), 10)
            assert w["reason"] is None and w["since"]

            shutil.rmtree(alpha.root)
            failed = await wait_until(lambda: state_is("alpha", "failed"), 5)
            assert "the root" in failed["reason"] and str(tmp_path) not in failed["reason"]
            assert (await watch_of("beta"))["state"] == "watching"  # type: ignore[index]
            make_jpeg(beta.root / "b2.jpg", 3)
            assert await _wait_seen(event_log, "beta", b"b2.jpg", 5) < 3

            # The root comes back: watched again, what it holds now is scanned.
            make_jpeg(alpha.root / "back.jpg", 4)
            await wait_until(lambda: state_is("alpha", "watching"), 10)
            await _wait_seen(event_log, "alpha", b"back.jpg", 5)
            make_jpeg(alpha.root / "sub" / "new.jpg", 5)
            assert await _wait_seen(event_log, "alpha", b"sub/new.jpg", 5) < 3
    finally:
        stop.set()
        await proj


async def test_cancelling_the_scanner_stops_watching_and_closes_descriptors(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    libs = _libs(tmp_path, "alpha", "beta", "gamma")
    for i, lib in enumerate(libs):
        for d in range(20):
            make_jpeg(lib.root / f"d{d}" / "x.jpg", i)
    before = _inotify_fds()
    all_fds = len(os.listdir("/proc/self/fd"))
    scanner = Scanner(event_log, libs, _watch_settings(settings))
    task = asyncio.create_task(scanner.run(asyncio.Event()))
    await _watching(scanner, "alpha", "beta", "gamma")
    # (after the first tick: Python 3.11's wait_for, which nats-py uses, may swallow a cancel
    # that lands while a reply arrives; that is the tick's matter, not the watcher's)
    await wait_until(lambda: len(scanner.reports) == 3, 10, step=0.02)
    assert _inotify_fds() == before + 3
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert loop.time() - t0 < 3
    assert _inotify_fds() == before
    assert len(os.listdir("/proc/self/fd")) <= all_fds


async def test_queue_overflow_asks_for_a_rescan(tmp_path: Path) -> None:
    """More events than the kernel queues (fs.inotify.max_queued_events) while the handler
    is busy: the watcher starts over and asks for a whole-library scan."""
    [lib] = _libs(tmp_path, "alpha")
    with open("/proc/sys/fs/inotify/max_queued_events") as f:
        queue = int(f.read())
    got: list[set[bytes]] = []
    busy = asyncio.Event()
    release = asyncio.Event()
    statuses: list[WatchStatus] = []

    async def on_paths(_lib: Library, rels: set[bytes]) -> None:
        got.append(rels)
        busy.set()
        await release.wait()

    async def on_status(_lib: Library, st: WatchStatus) -> None:
        statuses.append(st)

    watcher = Watcher([lib], {"alpha": Excludes([])}, on_paths, on_status, debounce=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        await wait_until(lambda: watcher.status.get("alpha"), 5, step=0.02)
        (lib.root / "a.jpg").write_bytes(b"x")
        await asyncio.wait_for(busy.wait(), 5)
        assert got == [{b"a.jpg"}]

        def flood() -> None:  # 2 events a file (create, close-write)
            d = os.fsencode(lib.root)
            for i in range(queue // 2 + 100):
                os.close(os.open(d + b"/f%d.tmp" % i, os.O_WRONLY | os.O_CREAT, 0o644))

        await asyncio.to_thread(flood)
        release.set()
        await wait_until(lambda: {WHOLE_LIBRARY} in got, 10, step=0.02)
        # And it watches on: a new file is handed over.
        (lib.root / "z.jpg").write_bytes(b"x")
        await wait_until(lambda: any(b"z.jpg" in r for r in got), 5, step=0.02)
        assert [s.state for s in statuses] == ["watching"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert statuses[-1].state == "off"


_LIMIT_SCRIPT = r"""
import asyncio, json, sys
from pathlib import Path
from eventsvc.scanner.walk import Excludes
from eventsvc.scanner.watch import Watcher
from eventsvc.core.settings import Library

with open("/proc/sys/user/max_inotify_watches", "w") as f:  # this user namespace only
    f.write("5")
libs = [Library(id=p.name, name=p.name, root=p) for p in map(Path, sys.argv[1:])]


async def main():
    got = []

    async def on_paths(lib, rels):
        got.append([lib.id, sorted(r.decode() for r in rels)])

    async def on_status(lib, st):
        pass

    w = Watcher(libs, {x.id: Excludes([]) for x in libs}, on_paths, on_status,
                retry=0.1, retry_max=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(w.run(stop))
    state = lambda i: w.status[i].state if i in w.status else None
    for _ in range(200):
        await asyncio.sleep(0.05)
        if state("big") == "failed" and state("small") == "watching":
            break
    (libs[1].root / "n.jpg").write_bytes(b"x")
    for _ in range(100):
        await asyncio.sleep(0.05)
        if ["small", ["n.jpg"]] in got:
            break
    out = {k: [v.state, v.reason] for k, v in w.status.items()}
    stop.set()
    await task
    print(json.dumps({"status": out, "got": got}))


asyncio.run(main())
"""


def test_the_watch_limit_fails_one_library_and_is_reported(tmp_path: Path) -> None:
    """fs.inotify.max_user_watches reached: that library fails with the reason, the other
    watches on. The limit is lowered in a user namespace of the test's own."""
    import json
    import subprocess
    import sys

    if subprocess.run(["unshare", "-U", "-r", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user namespaces here (unshare -U) to lower the watch limit in")
    big, small = _libs(tmp_path, "big", "small")
    for i in range(10):
        (big.root / f"d{i}").mkdir()
    (small.root / "sub").mkdir()
    proc = subprocess.run(
        [
            "unshare",
            "-U",
            "-r",
            sys.executable,
            "-c",
            _LIMIT_SCRIPT,
            str(big.root),
            str(small.root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    state, reason = out["status"]["big"]
    assert state == "failed" and "limit reached (5 watches: fs.inotify.max_user_watches)" in reason
    assert out["status"]["small"] == ["watching", None]
    # (a library that failed first asks for a rescan, WHOLE_LIBRARY, once it watches again)
    assert ["small", ["n.jpg"]] in out["got"]
    assert all(lib == "small" for lib, _ in out["got"])


async def test_changes_renames_and_deletions_are_handled_as_before(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    [lib] = _libs(tmp_path, "alpha")
    for i in range(4):
        make_jpeg(lib.root / f"{i}.jpg", i)
    scanner = Scanner(event_log, [lib], _watch_settings(settings))
    async with _scanning(scanner):
        await _wait_seen(event_log, "alpha", b"3.jpg", 10)
        await _watching(scanner, "alpha")
        p = Pipeline(event_log, settings, [lib])

        async def count(etype: str, path: str) -> int:
            return sum(1 for _, e in await p.events(etype) if e.path == path)

        # Only the mtime changes (as rsync -t or cp -p set it): seen again.
        os.utime(lib.root / "0.jpg", ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
        await wait_until(lambda: _eq(count("FileSeen", "0.jpg"), 2), 5)
        # A rename: the old location is missing, the new one seen.
        os.rename(lib.root / "1.jpg", lib.root / "renamed.jpg")
        await _wait_seen(event_log, "alpha", b"renamed.jpg", 5)
        await wait_until(lambda: count("FileMissing", "1.jpg"), 5)
        # A deletion.
        (lib.root / "2.jpg").unlink()
        await wait_until(lambda: count("FileMissing", "2.jpg"), 5)
    assert await count("FileMissing", "3.jpg") == 0


async def _eq(value: Awaitable[int], want: int) -> bool:
    return await value == want
