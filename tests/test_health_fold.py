"""Library health is one fold of the log (issue 13, item 3): a running scanner follows what
another scanner (as ``eventsvc scan`` runs it, on its own connection) published."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventsvc.core.events import FileMissing, LibraryOnline, LibraryStale
from eventsvc.core.health import Health, fold, load_health
from eventsvc.core.log import EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.settings import Library, Settings
from eventsvc.scanner import Scanner
from eventsvc.server import EmbeddedNats
from eventsvc.video.reaper import library_states
from tests.harness import Pipeline, cli, wait_until

OLD_NS = 1_600_000_000 * 10**9


def _library(tmp_path: Path, n: int) -> Library:
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(n):
        f = root / f"{i:03d}.jpg"
        f.write_bytes(b"\xff\xd8" + i.to_bytes(4, "big"))
        os.utime(f, ns=(OLD_NS, OLD_NS))
    return Library(id="lib", name="lib", root=root)


@contextlib.asynccontextmanager
async def _up(event_log: EventLog, lib: Library, settings: Settings) -> AsyncIterator[Scanner]:
    """The scanner of ``eventsvc up``: ticks on its own, no file watching."""
    scanner = Scanner(event_log, [lib], settings)
    stop = asyncio.Event()
    task = asyncio.create_task(scanner.run(stop))
    try:
        await wait_until(lambda: _last(event_log, "LibraryOnline"), 30)
        yield scanner
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def _cli_scanner(
    server: EmbeddedNats, lib: Library, settings: Settings
) -> AsyncIterator[Scanner]:
    """A second scanner on its own connection, as a CLI ``eventsvc scan`` is."""
    other = await EventLog.connect(server.url)
    try:
        scanner = Scanner(other, [lib], settings)
        await scanner.load()
        yield scanner
    finally:
        await other.close()


async def _second_scan(
    how: str, server: EmbeddedNats, lib: Library, settings: Settings, *, accept: bool = False
) -> dict[str, object]:
    """One full scan by a second scanner: in this process on its own connection, or as a
    real ``eventsvc scan`` process. Its report."""
    if how == "instance":
        async with _cli_scanner(server, lib, settings) as second:
            reports = await second.tick(full=True, accept_missing=accept)
            if accept:  # as the CLI does
                await second.drain_all(reports)
            [report] = reports
        return vars(report)
    config = lib.root.parent / "libraries.toml"
    config.write_text(f'[[library]]\nid = "{lib.id}"\nname = "{lib.name}"\nroot = "{lib.root}"\n')
    env = {
        "EVENTSVC_NATS_URL": server.url,
        "EVENTSVC_SETTLE_SECONDS": str(settings.settle_seconds),
        "EVENTSVC_MISSING_CAP": str(settings.missing_cap),
        "EVENTSVC_LOG_LEVEL": "WARNING",
    }
    data = lib.root.parent / "cli-data"
    args = ["scan", "--config", str(config), "--data-dir", str(data)]
    proc = cli(*args, *(["--accept-missing"] if accept else []), env=env)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=60)
    lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
    assert proc.returncode in (0, 3) and lines, out.decode()
    return json.loads(lines[-1])


async def _events(event_log: EventLog, etype: str) -> list[tuple[int, object]]:
    return await Pipeline(event_log, Settings(), []).events(etype)


async def _last(event_log: EventLog, etype: str) -> int:
    evs = await _events(event_log, etype)
    return evs[-1][0] if evs else 0


def _settings(settings: Settings, **kw: object) -> Settings:
    base = {"watch": False, "quick_interval": 0.3, "full_interval": 3600, "settle_seconds": 0.2}
    return settings.model_copy(update={**base, **kw})


@pytest.mark.parametrize("second", ["instance", "process"])
async def test_up_publishes_online_when_files_are_back_after_a_cli_scan_said_stale(
    tmp_path: Path, event_log: EventLog, settings: Settings, nats_server: EmbeddedNats, second: str
) -> None:
    lib = _library(tmp_path, 30)
    away = tmp_path / "away"
    away.mkdir()
    cfg = _settings(settings)
    async with _up(event_log, lib, cfg) as up:
        moved = sorted(lib.root.glob("*.jpg"))[:20]
        for p in moved:  # a share of the library away (a sync tool, a half mount)
            os.rename(p, away / p.name)
        report = await _second_scan(second, nats_server, lib, cfg)
        assert report["state"] == "stale"
        stale_seq = await _last(event_log, "LibraryStale")
        await wait_until(lambda: up.state.libraries[lib.id].state == "stale", 30)
        for p in moved:
            os.rename(away / p.name, p)

        async def back_online() -> bool:
            return await _last(event_log, "LibraryOnline") > stale_seq

        await wait_until(back_online, 30)
        assert up.state.libraries[lib.id].state == "online"
    assert await _events(event_log, "FileMissing") == []
    assert (await library_states(event_log))[lib.id][0] == "online"


@pytest.mark.parametrize("second", ["instance", "process"])
async def test_up_records_later_deletions_after_a_cli_scan_accepted_missing_files(
    tmp_path: Path, event_log: EventLog, settings: Settings, nats_server: EmbeddedNats, second: str
) -> None:
    lib = _library(tmp_path, 30)
    cfg = _settings(settings, full_interval=0.5)
    async with _up(event_log, lib, cfg) as up:
        files = sorted(lib.root.glob("*.jpg"))
        for p in files[:20]:
            p.unlink()  # really deleted: the owner confirms with --accept-missing
        capped = cfg.model_copy(update={"missing_cap": 7})  # one-shot: records all it accepts
        report = await _second_scan(second, nats_server, lib, capped)
        assert report["state"] == "stale"  # whoever said it first, the log says stale
        report = await _second_scan(second, nats_server, lib, capped, accept=True)
        assert report["state"] == "online" and report["missing"] == 20
        online_seq = await _last(event_log, "LibraryOnline")
        await wait_until(lambda: up.state.libraries[lib.id].seq >= online_seq, 30)
        files[25].unlink()  # a later deletion, seen by up's next full scan

        async def recorded() -> bool:
            evs = await _events(event_log, "FileMissing")
            return any(isinstance(e, FileMissing) and e.path == files[25].name for _, e in evs)

        await wait_until(recorded, 30)
        assert up.state.libraries[lib.id].state == "online"
    stale_after = [s for s, _ in await _events(event_log, "LibraryStale") if s > online_seq]
    assert stale_after == []
    assert len(await _events(event_log, "FileMissing")) == 21


async def test_every_reader_folds_the_same_health(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = _library(tmp_path, 3)
    root = str(lib.root)
    await event_log.publish(LibraryOnline(library_id="lib", name="lib", root=root))
    await event_log.publish(
        LibraryStale(library_id="lib", name="lib", root=root, reason="unmounted")
    )
    await event_log.publish(LibraryOnline(library_id="other", name="o", root="/elsewhere"))
    health = await load_health(event_log)
    assert {k: (h.state, h.reason) for k, h in health.items()} == {
        "lib": ("stale", "unmounted"),
        "other": ("online", None),
    }
    assert {k: v[0] for k, v in (await library_states(event_log)).items()} == {
        "lib": "stale",
        "other": "online",
    }
    roots = LibraryRoots([lib])
    await roots.refresh(event_log)
    assert set(roots.unconfigured) == {"other"}
    # The fold ignores an event older than the one it holds (a late reader, a replay).
    states = {"lib": Health("stale", 10, "unmounted")}
    assert not fold(states, 5, LibraryOnline(library_id="lib", name="lib", root=root))
    assert fold(states, 11, LibraryOnline(library_id="lib", name="lib", root=root))
    assert states["lib"].state == "online"
