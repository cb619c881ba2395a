"""Scanner -> hasher -> projector on a real nats-server and real SQLite files."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from pathlib import Path

import pytest

from eventsvc.core.errors import ReadModelError
from eventsvc.core.events import HDR_TYPE, HDR_VERSION, FileSeen
from eventsvc.core.ids import file_id
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings, load_libraries
from projections import readmodel
from projections.projector import rebuild
from tests.harness import Pipeline, b3, make_jpeg, make_video, running


def _rows(p: Pipeline, sql: str, *args: object) -> list[tuple]:  # type: ignore[type-arg]
    conn = p.db()
    try:
        return [tuple(r) for r in conn.execute(sql, args)]
    finally:
        conn.close()


async def test_hashes_match_blake3_and_images_get_perceptual_hashes(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    files = [make_jpeg(lib / f"{i}.jpg", i, exif=i % 2 == 0) for i in range(6)]
    files.append(make_video(lib / "v" / "clip.mp4"))
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    files.append(lib / "broken.jpg")
    libs, _ = load_libraries([str(lib)])
    async with running(Pipeline(event_log, settings, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled()
        got = dict(_rows(p, "SELECT path, content_hash FROM files"))
        assert got == {str(f.relative_to(lib)): b3(f) for f in files}
        content = {
            r[0]: r[1:]
            for r in _rows(p, "SELECT content_hash, phash, dhash, width, media_kind FROM content")
        }
        broken = b3(lib / "broken.jpg")
        assert content[broken][0] is None  # no pHash, but the hash landed …
        [(stage, operation, reason)] = _rows(
            p, "SELECT stage, operation, reason FROM failures WHERE content_hash = ?", broken
        )
        assert (stage, operation) == (
            "media",
            "thumbnail",
        ) and "decode" in reason  # … and the reason is recorded
        ok = content[b3(files[0])]
        assert len(ok[0]) == 16 and len(ok[1]) == 16 and ok[2] == 96
        assert content[b3(files[6])][3] == "video"
        # EXIF facts and the date-taken waterfall, per location.
        dated = dict(_rows(p, "SELECT path, date_source FROM files"))
        assert dated["0.jpg"] == "exif_original" and dated["1.jpg"] == "filesystem"
        [(make, model)] = _rows(
            p, "SELECT make, model FROM media WHERE content_hash = ?", b3(files[0])
        )
        assert (make, model) == ("TestCam", "Model 1")
        thumbs = _rows(p, "SELECT sizes FROM thumbnails WHERE content_hash = ?", b3(files[0]))
        assert thumbs and "small" in thumbs[0][0]


async def test_library_renamed_away_and_back_loses_nothing_and_rehashes_nothing(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    for i in range(8):
        make_jpeg(lib / "a" / f"{i}.jpg", i)
    libs, _ = load_libraries([str(lib)])
    async with running(Pipeline(event_log, settings, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled()
        before = _rows(p, "SELECT file_id, path, content_hash FROM files ORDER BY file_id")
        hashes_before = len(await p.events("HashComputed"))
        lib.rename(tmp_path / "unmounted")
        for _ in range(4):
            [r] = await p.scanner.tick(full=True)
            assert r.state == "stale"
        await p.settled()
        assert _rows(p, "SELECT state FROM libraries") == [("stale",)]
        assert _rows(p, "SELECT file_id, path, content_hash FROM files ORDER BY file_id") == before
        (tmp_path / "unmounted").rename(lib)
        await p.scanner.tick(full=True)
        await p.settled()
        assert _rows(p, "SELECT state FROM libraries") == [("online",)]
        assert _rows(p, "SELECT file_id, path, content_hash FROM files ORDER BY file_id") == before
        assert len(await p.events("HashComputed")) == hashes_before
        assert not await p.events("FileMissing")


async def test_move_and_copy_cost_hash_work_only_for_new_locations(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib, lib2 = tmp_path / "lib", tmp_path / "lib2"
    for i in range(12):
        make_jpeg(lib / f"{i}.jpg", i)
    libs, _ = load_libraries([str(lib), str(lib2)])
    lib2.mkdir()
    async with running(Pipeline(event_log, settings, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled()
        assert len(await p.events("HashComputed")) == 12
        (lib / "sub").mkdir()
        (lib / "3.jpg").rename(lib / "sub" / "moved.jpg")
        shutil.copy2(lib / "5.jpg", lib2 / "copy.jpg")
        await p.scanner.tick(full=True)
        await p.settled()
        hashed = [e for _, e in await p.events("HashComputed")]
        assert len(hashed) == 14  # the two new locations, nothing else
        new_ids = {hashed[-1].file_id, hashed[-2].file_id}
        assert new_ids == {
            file_id(libs[0].id, b"sub/moved.jpg"),
            file_id(libs[1].id, b"copy.jpg"),
        }
        paths = {r[0] for r in _rows(p, "SELECT path FROM files")}
        assert "3.jpg" not in paths and "sub/moved.jpg" in paths and "copy.jpg" in paths
        dup = _rows(
            p,
            "SELECT library_id, path FROM files WHERE content_hash = ? ORDER BY library_id",
            b3(lib / "5.jpg"),
        )
        assert sorted(dup) == sorted([(libs[0].id, "5.jpg"), (libs[1].id, "copy.jpg")])


async def test_poison_messages_become_derivation_failed_and_the_consumer_goes_on(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    make_jpeg(lib / "good.jpg")
    libs, _ = load_libraries([str(lib)])
    async with running(Pipeline(event_log, settings, libs)) as p:
        # A FileSeen for a path that is a directory now.
        (lib / "dir.jpg").mkdir()
        bad = FileSeen(
            library_id=libs[0].id,
            file_id=file_id(libs[0].id, b"dir.jpg"),
            path="dir.jpg",
            size=1,
            mtime_ns=1,
            media_kind="image",
        )
        await event_log.publish(bad)
        # Garbage bytes on a FileSeen subject, with and without our headers.
        await event_log.publish_raw("photos.file.deadbeef.FileSeen", b"\x00\xffnot json")
        await event_log.publish_raw(
            "photos.file.cafe.FileSeen",
            b'{"type":"FileSeen","v":1}',
            {HDR_TYPE: "FileSeen", HDR_VERSION: "1"},
        )
        # A file for an unknown library: retried, then recorded as given up.
        ghost = FileSeen(
            library_id="lib-ghost",
            file_id="0" * 32,
            path="x.jpg",
            size=1,
            mtime_ns=1,
            media_kind="image",
        )
        await event_log.publish(ghost)
        await p.scanner.tick(full=True)  # then a good file after the poison
        await p.settled(timeout=60)
        failed = [e for _, e in await p.events("DerivationFailed")]
        reasons = " | ".join(e.reason for e in failed)
        assert len(failed) == 4, reasons
        assert "not a regular file" in reasons and "undecodable" in reasons
        assert "gave up after 3 tries" in reasons
        assert _rows(p, "SELECT count(*) FROM failures") == [(4,)]
        assert _rows(p, "SELECT content_hash FROM files WHERE path = 'good.jpg'") == [
            (b3(lib / "good.jpg"),)
        ]


def test_a_file_that_changes_while_hashed_is_re_read_never_recorded_wrong(tmp_path: Path) -> None:

    from eventsvc.core.errors import TransientError
    from eventsvc.derive import hashing

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(8 << 20))
    res = hashing.hash_file(os.fsencode(big))
    assert res.content_hash == b3(big) and res.size == 8 << 20
    calls = []

    def writer_interferes_once(path: bytes, size: int) -> str:
        digest = hashing._digest(path, size)
        if not calls:  # a concurrent writer changes the file mid-hash
            with open(path, "ab") as f:
                f.write(b"appended while hashing")
        calls.append(digest)
        return digest

    res = hashing.hash_file(os.fsencode(big), writer_interferes_once)
    assert len(calls) == 2 and res.content_hash == b3(big) and res.size == (8 << 20) + 22

    def writer_never_stops(path: bytes, size: int) -> str:
        with open(path, "ab") as f:
            f.write(b"x")
        return hashing._digest(path, size)

    with pytest.raises(TransientError, match="kept changing"):
        hashing.hash_file(os.fsencode(big), writer_never_stops)


@pytest.mark.parametrize("process", [False, True], ids=["inline", "process"])
async def test_rebuild_equals_the_incremental_read_model(
    tmp_path: Path, event_log: EventLog, settings: Settings, process: bool
) -> None:
    lib = tmp_path / "lib"
    for i in range(15):
        make_jpeg(lib / f"d{i % 3}" / f"{i}.jpg", i)
    libs, _ = load_libraries([str(lib)])
    async with running(Pipeline(event_log, settings, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled()
        (lib / "d0" / "0.jpg").unlink()
        make_jpeg(lib / "d1" / "1.jpg", 77, size=(120, 80))
        await p.scanner.tick(full=True)
        await p.settled()
        conn = p.db()
        before = readmodel.dump(conn)
        conn.close()
        old = readmodel.current_path(settings.readmodel_dir)
        path, last = await rebuild(event_log, settings.readmodel_dir, batch=7, process=process)
        assert path != old and last == await event_log.last_seq()
        conn = readmodel.open_reader(path)
        assert readmodel.dump(conn) == before
        conn.close()
        # The live projector moves to the new generation and keeps applying.
        make_jpeg(lib / "after.jpg", 5)
        await p.scanner.tick(full=False)
        await p.settled()
        assert p.projector is not None and p.projector.status.path == path
        assert ("after.jpg",) in _rows(p, "SELECT path FROM files")


async def test_a_dead_applier_process_fails_the_rebuild_and_current_stays(
    tmp_path: Path, event_log: EventLog, settings: Settings
) -> None:
    lib = tmp_path / "lib"
    for i in range(6):
        make_jpeg(lib / f"{i}.jpg", i)
    libs, _ = load_libraries([str(lib)])
    async with running(Pipeline(event_log, settings, libs)) as p:
        await p.scanner.tick(full=True)
        await p.settled()
    current = readmodel.current_path(settings.readmodel_dir)

    def kill_the_child(done: int, target: int) -> None:
        for child in multiprocessing.active_children():
            if child.name == "rebuild-applier":
                child.kill()

    with pytest.raises(ReadModelError, match="applier process"):
        await rebuild(
            event_log, settings.readmodel_dir, batch=2, process=True, progress=kill_the_child
        )
    assert readmodel.current_path(settings.readmodel_dir) == current
    assert not [c for c in multiprocessing.active_children() if c.name == "rebuild-applier"]
