"""Re-derivation of the faces and playlist stages after their deriver version changed
(issue 13, item 9): real dlib models, real ffmpeg, real nats-server and SQLite. The
version-1 facts serve until version 2's land; `rederive` and `up`'s background consumer
both re-derive; without a face model the re-derivation says so and records nothing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from eventsvc.core.log import EventLog
from eventsvc.core.natsauth import permissions
from eventsvc.core.roots import LibraryRoots
from eventsvc.core.settings import Library, Settings, load_libraries
from eventsvc.derive import faces as faces_mod
from eventsvc.derive import playlist as playlist_mod
from eventsvc.derive.rederive import rederive
from tests.harness import Pipeline, b3, make_jpeg, running, wait_until
from tests.video.media import make


def _rows(p: Pipeline, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    conn = p.db()
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def _versions(p: Pipeline, fact: str) -> dict[str, int]:
    rows = _rows(p, f"SELECT key, version FROM fact_versions WHERE fact = '{fact}'")
    return {k: v for k, v in rows}


async def _facts(p: Pipeline, etype: str) -> list[tuple[str, int]]:
    return [(e.content_hash, e.fact_version) for _, e in await p.events(etype)]


def _face_library(root: Path) -> list[Path]:
    root.mkdir(parents=True)
    astro, coffee = root / "astro.jpg", root / "coffee.jpg"
    Image.fromarray(skimage.data.astronaut()).save(astro, quality=92)
    Image.fromarray(skimage.data.coffee()).save(coffee, quality=92)
    return [astro, coffee]


def _faces_settings(settings: Settings, **kw: object) -> Settings:
    return settings.model_copy(update={"workers": ["hasher", "media"], **kw})


async def test_a_new_faces_version_rederives_and_keeps_face_ids(
    tmp_path: Path, event_log: EventLog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _face_library(tmp_path / "lib")
    lib = Library("l", "l", tmp_path / "lib")
    s = _faces_settings(settings, rederive_background=False)
    monkeypatch.setattr(faces_mod, "FACES_VERSION", 1)  # the deriver before the fix
    async with running(Pipeline(event_log, s, [lib]), workers=("faces",)) as p:
        await p.scanner.tick(full=True)
        await p.settled(60)
        hashes = {b3(f) for f in files}
        assert set(await _facts(p, "FacesDetected")) == {(h, 1) for h in hashes}
        before = _rows(p, "SELECT face_id, content_hash FROM faces ORDER BY face_id")
        assert [h for _, h in before] == [b3(files[0])]  # the astronaut's one face
        assert _versions(p, "FacesDetected") == {}
        roots = LibraryRoots([lib])
        await roots.refresh(event_log)
        # The fixed deriver (version 2): `eventsvc rederive --stage faces` makes its own.
        monkeypatch.setattr(faces_mod, "FACES_VERSION", 2)
        result = await rederive(event_log, s, roots, "faces")
        assert result["model_error"] is None and result["failed"] == 0, result
        assert result["rederived"] == 2 and result["version"] == 2, result
        facts = await _facts(p, "FacesDetected")
        for h in hashes:  # once per content and version, the old one kept in the log
            assert sorted(v for x, v in facts if x == h) == [1, 2]
        await p.settled(60)
        await wait_until(lambda: len(_versions(p, "FacesDetected")) == 2, 20)
        assert set(_versions(p, "FacesDetected").values()) == {2}
        # the newer scan replaced the older one, the face keeps its id
        assert _rows(p, "SELECT face_id, content_hash FROM faces ORDER BY face_id") == before
        # Again: nothing left to do, nothing appended.
        last = await event_log.last_seq()
        again = await rederive(event_log, s, roots, "faces")
        assert (again["rederived"], again["current"]) == (0, 2), again
        assert await event_log.last_seq() == last
        names = {ci.name for ci in await event_log.js.consumers_info(s.stream)}
        assert not any(n.startswith("rederive-") for n in names)


async def test_up_rederives_faces_in_the_background_after_an_upgrade(
    tmp_path: Path, event_log: EventLog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _face_library(tmp_path / "lib")
    lib = Library("l", "l", tmp_path / "lib")
    s = _faces_settings(settings)
    monkeypatch.setattr(faces_mod, "FACES_VERSION", 1)
    async with running(Pipeline(event_log, s, [lib]), workers=("faces",)) as p:
        await p.scanner.tick(full=True)
        await p.settled(60)
    names = {ci.name for ci in await event_log.js.consumers_info(s.stream)}
    assert "faces-rederive" not in names  # a new log had nothing to redo
    monkeypatch.setattr(faces_mod, "FACES_VERSION", 2)  # the upgrade
    async with running(Pipeline(event_log, s, [lib]), hasher=False, workers=("faces",)) as p:
        want = {(b3(f), 2) for f in files}

        async def rederived() -> bool:
            return want <= set(await _facts(p, "FacesDetected"))

        await wait_until(rederived, 90)
        ci = await event_log.js.consumer_info(s.stream, "faces-rederive")
        assert "v2" in (ci.config.description or "")
        await wait_until(lambda: len(_versions(p, "FacesDetected")) == 2, 30)
        assert p.workers["faces"].background.stats.rederived == 2


async def test_rederive_faces_without_a_model_says_so_and_records_nothing(
    tmp_path: Path, event_log: EventLog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _face_library(tmp_path / "lib")
    lib = Library("l", "l", tmp_path / "lib")
    s = _faces_settings(settings, rederive_background=False)
    monkeypatch.setattr(faces_mod, "FACES_VERSION", 1)
    async with running(Pipeline(event_log, s, [lib]), workers=("faces",)) as p:
        await p.scanner.tick(full=True)
        await p.settled(60)
    with socket.socket() as sock:  # a port nothing listens on: no inference service
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = s.model_copy(update={"faces_inference_url": f"http://127.0.0.1:{port}"})
    roots = LibraryRoots([lib])
    await roots.refresh(event_log)
    monkeypatch.setattr(faces_mod, "FACES_VERSION", 2)
    last = await event_log.last_seq()
    result = await rederive(event_log, gone, roots, "faces")
    assert result["model_error"], result
    assert result["rederived"] == 0 and result["failed"] == 0
    assert await event_log.last_seq() == last  # no fact, no DerivationFailed


async def test_a_new_playlist_version_rederives_in_rederive_and_in_up(
    tmp_path: Path, event_log: EventLog, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings.model_copy(
        update={"video_preset": "ultrafast", "video_segment_seconds": 1.0,
                "rederive_background": False}
    )  # fmt: skip
    lib = tmp_path / "lib"
    video = make(lib / "v.mp4", seconds=2, gop=10)
    make_jpeg(lib / "photo.jpg")
    libs, _ = load_libraries([str(lib)])
    h = b3(video)
    monkeypatch.setattr(playlist_mod, "PLAYLIST_VERSION", 1)
    async with running(Pipeline(event_log, s, libs), workers=("playlist",)) as p:
        await p.scanner.tick(full=True)
        await p.settled(60)
        assert await _facts(p, "PlaylistReady") == [(h, 1)]
        await wait_until(lambda: _rows(p, "SELECT content_hash FROM playlists") == [(h,)], 20)
        roots = LibraryRoots(libs)
        await roots.refresh(event_log)
        monkeypatch.setattr(playlist_mod, "PLAYLIST_VERSION", 2)
        result = await rederive(event_log, s, roots, "playlist", library=libs[0].id)
        assert result["failed"] == 0 and result["rederived"] == 1, result
        assert result["current"] == 1  # the photo: not a video
        assert await _facts(p, "PlaylistReady") == [(h, 1), (h, 2)]
        await p.settled(60)
        await wait_until(lambda: _versions(p, "PlaylistReady") == {h: 2}, 20)
        assert _rows(p, "SELECT content_hash FROM playlists") == [(h,)]  # served throughout
    # `up` after another upgrade: the playlist worker's background consumer
    monkeypatch.setattr(playlist_mod, "PLAYLIST_VERSION", 3)
    up = s.model_copy(update={"rederive_background": True})
    async with running(Pipeline(event_log, up, libs), hasher=False, workers=("playlist",)) as p:

        async def rederived() -> bool:
            return (h, 3) in set(await _facts(p, "PlaylistReady"))

        await wait_until(rederived, 90)
        ci = await event_log.js.consumer_info(s.stream, "playlist-rederive")
        assert "v3" in (ci.config.description or "")
        await wait_until(lambda: _versions(p, "PlaylistReady") == {h: 3}, 30)
        assert len(await p.events("PlaylistReady")) == 3


def test_permissions_of_the_background_rederivations_are_their_workers_own() -> None:
    def allowed(role: str) -> list[str]:
        return permissions(role)["publish"]["allow"]

    for stage in ("media", "faces", "playlist"):
        create = f"$JS.API.CONSUMER.DURABLE.CREATE.PHOTOS.{stage}-rederive"
        assert create in allowed(stage)  # its worker's background consumer
        others = [r for r in ("hasher", "media", "faces", "playlist", "people") if r != stage]
        assert not [r for r in others if create in allowed(r)]
        assert create in permissions("reencode")["publish"]["deny"]  # never `rederive`'s
    status = "$KV.EVENTSVC_STATUS.worker.faces-rederive"  # a paused one says why
    assert status in allowed("faces") and status not in allowed("playlist")
