"""Re-derivation after a media deriver version change (issue 13, item 9): real files,
real nats-server, real SQLite; the facts of version 1 serve until version 2's land."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventsvc.core.errors import ConfigError
from eventsvc.core.events import ExifExtracted, ThumbnailReady
from eventsvc.core.log import EventLog
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.settings import Settings, load_libraries
from eventsvc.derive import media as media_mod
from eventsvc.derive.media import MediaDeriver
from eventsvc.derive.rederive import rederive
from tests.harness import Pipeline, b3, make_jpeg, running, wait_until


def _versions(p: Pipeline) -> dict[str, int]:
    conn = p.db()
    try:
        rows = conn.execute("SELECT key, version FROM fact_versions WHERE fact = 'ExifExtracted'")
        return {r[0]: r[1] for r in rows}
    finally:
        conn.close()


async def _facts(p: Pipeline, etype: str) -> list[tuple[str, int]]:
    return [(e.content_hash, e.fact_version) for _, e in await p.events(etype)]


async def test_a_new_media_version_rederives_once_and_old_facts_serve_meanwhile(
    tmp_path: Path, event_log: EventLog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "lib"
    files = [make_jpeg(lib / f"{i}.jpg", i, exif=True) for i in range(4)]
    make_jpeg(tmp_path / "other" / "x.jpg", 9, exif=True)
    libs, _ = load_libraries([str(lib), str(tmp_path / "other")])
    settings = settings.model_copy(update={"rederive_background": False})
    monkeypatch.setattr(media_mod, "MEDIA_VERSION", 1)  # the deriver before the fix
    async with running(Pipeline(event_log, settings, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled()
        hashes = {b3(f) for f in files}
        assert {h for h, v in await _facts(p, "ExifExtracted") if v == 1} >= hashes
        assert _versions(p) == {}
        # The fixed deriver (version 2), forced for one library.
        roots = LibraryRoots(libs)
        await roots.refresh(event_log)
        fixed = MediaDeriver(roots, settings.thumbs_dir, event_log)
        fixed.version = 2
        lib_id = libs[0].id
        result = await rederive(event_log, settings, roots, "media", library=lib_id,
                                deriver=fixed)  # fmt: skip
        assert result["rederived"] == 4 and result["other_library"] == 1
        assert result["failed"] == 0
        exif = await _facts(p, "ExifExtracted")
        thumbs = await _facts(p, "ThumbnailReady")
        for h in hashes:  # once per content and version, the old one kept in the log
            assert sorted(v for x, v in exif if x == h) == [1, 2]
            assert sorted(v for x, v in thumbs if x == h) == [1, 2]
        await p.settled()
        await wait_until(lambda: len(_versions(p)) == 4)
        assert _versions(p) == dict.fromkeys(hashes, 2)
        # Again: nothing left to do (two direct reads per content), nothing appended.
        last = await event_log.last_seq()
        again = await rederive(event_log, settings, roots, "media", deriver=fixed)
        assert again["rederived"] == 1 and again["current"] == 4  # the other library's
        again = await rederive(event_log, settings, roots, "media", deriver=fixed)
        assert again["rederived"] == 0 and again["current"] == 5
        assert await event_log.last_seq() == last + 2  # the other library's two facts
        # the consumers of one-shot runs are gone
        names = {ci.name for ci in await event_log.js.consumers_info(settings.stream)}
        assert not any(n.startswith("rederive-") for n in names)


async def test_up_rederives_in_the_background_after_an_upgrade(
    tmp_path: Path, event_log: EventLog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "lib"
    files = [make_jpeg(lib / f"{i}.jpg", i, exif=i % 2 == 0) for i in range(3)]
    libs, _ = load_libraries([str(lib)])
    monkeypatch.setattr(media_mod, "MEDIA_VERSION", 1)
    async with running(Pipeline(event_log, settings, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled()
    # a new log had nothing to redo: no background consumer was made
    infos = await event_log.js.consumers_info(settings.stream)
    assert {ci.name for ci in infos if ci.config.durable_name} == {"hasher", "media"}
    monkeypatch.setattr(media_mod, "MEDIA_VERSION", 2)  # the upgrade
    async with running(Pipeline(event_log, settings, libs), hasher=False) as p:
        want = {(b3(f), 2) for f in files}

        async def rederived() -> bool:
            return want <= set(await _facts(p, "ExifExtracted"))

        await wait_until(rederived, 60)
        ci = await event_log.js.consumer_info(settings.stream, "media-rederive")
        assert "v2" in (ci.config.description or "")
        await wait_until(lambda: len(_versions(p)) == 3, 30)


async def test_rederive_refuses_an_unknown_stage(event_log: EventLog, settings: Settings) -> None:
    with pytest.raises(ConfigError, match="cannot re-derive stage 'bogus'"):
        await rederive(event_log, settings, LibraryRoots([]), "bogus")


def test_event_classes_default_to_version_1() -> None:
    assert ExifExtracted(content_hash="a" * 64, fields={}).fact_version == 1
    assert ThumbnailReady(content_hash="a" * 64, sizes={}).fact_version == 1
    assert asyncio.iscoroutinefunction(rederive)
