"""Once-only facts beyond NATS's duplicate window, and deriver versions in the once key
(issue 13, items 9 and 10): real nats-server, real SQLite."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js.api import StreamConfig

from eventsvc.core.events import (
    HDR_TYPE,
    HDR_VERSION,
    DerivationFailed,
    Event,
    ExifExtracted,
    FaceBox,
    FacesDetected,
    FileSeen,
    HashComputed,
    PlaylistReady,
    ThumbnailReady,
    decode,
    encode,
)
from eventsvc.core.log import EventLog
from eventsvc.server import EmbeddedNats
from projections import readmodel
from projections.projector import apply, rebuild

H1, H2 = "a" * 64, "b" * 64
WINDOW = 1.0


@pytest.fixture
async def short_log(nats_server: EmbeddedNats) -> AsyncIterator[EventLog]:
    """A stream whose duplicate window is one second (made here, as the log before this
    change would have found it, and by ensure_stream with the new parameter)."""
    lg = await EventLog.connect(nats_server.url)
    lg.duplicate_window = WINDOW
    cfg = lg.stream_config()
    assert cfg.duplicate_window == WINDOW
    await lg.js.add_stream(
        StreamConfig(name=lg.stream, subjects=[f"{lg.prefix}.>"], duplicate_window=WINDOW)
    )
    await lg.ensure_stream()
    info = await lg.js.stream_info(lg.stream)
    assert info.config.duplicate_window == WINDOW
    yield lg
    await lg.close()


async def _on(lg: EventLog, subject: str) -> list[Event]:
    out = []
    async for batch in lg.read([subject]):
        out += [decode(r.data, r.headers) for r in batch]
    return out


def _seen(n: int) -> FileSeen:
    return FileSeen(
        library_id="lib", file_id=f"f{n}", path=f"{n}.jpg", size=10, mtime_ns=n,
        media_kind="image",
    )  # fmt: skip


def _hashed(n: int, seq: int, h: str = H1) -> HashComputed:
    return HashComputed(
        content_hash=h, library_id="lib", file_id=f"f{n}", path=f"{n}.jpg", size=10,
        mtime_ns=n, media_kind="image", causation=seq,
    )  # fmt: skip


async def test_a_redelivery_after_the_duplicate_window_appends_no_second_fact(
    short_log: EventLog,
) -> None:
    lg = short_log
    s1 = (await lg.publish(_seen(1))).seq
    s2 = (await lg.publish(_seen(2))).seq
    first = await lg.publish(_hashed(1, s1))
    fail = DerivationFailed(
        stage="media",
        operation="thumbnail",
        reason="x",
        input_subject="s",
        causation=s1,
        content_hash=H1,
    )
    failed = await lg.publish(fail)
    await asyncio.sleep(WINDOW + 0.6)  # beyond the window: Nats-Msg-Id no longer helps
    again = await lg.publish(_hashed(1, s1))
    assert again.duplicate and again.seq == first.seq
    assert (await lg.publish(fail)).seq == failed.seq
    # the same content at another location is a fact of its own, and so is the first
    # location hashed again for a new FileSeen (a new cause)
    other = await lg.publish(_hashed(2, s2))
    s3 = (await lg.publish(_seen(1).model_copy(update={"mtime_ns": 99}))).seq
    rehashed = await lg.publish(_hashed(1, s3))
    assert not other.duplicate and not rehashed.duplicate
    hashed = await _on(lg, f"photos.content.{H1}.HashComputed")
    assert [(e.file_id, e.causation) for e in hashed] == [("f1", s1), ("f2", s2), ("f1", s3)]
    assert len(await _on(lg, f"photos.content.{H1}.DerivationFailed")) == 1


async def test_once_facts_hold_beyond_the_window_and_per_deriver_version(
    short_log: EventLog,
) -> None:
    lg = short_log
    v1 = ExifExtracted(content_hash=H1, fields={"make": "Old"}, causation=5)
    assert (await lg.publish(v1)).duplicate is False
    await asyncio.sleep(WINDOW + 0.6)
    assert (await lg.publish(v1.model_copy(update={"causation": 9}))).duplicate
    # a newer deriver derives again: its fact is appended once …
    v2 = ExifExtracted(content_hash=H1, fields={"make": "New"}, causation=5, deriver_version=2)
    assert v2.default_msg_id() != v1.default_msg_id()
    got = await lg.publish(v2)
    assert not got.duplicate
    assert (await lg.publish(v2)).duplicate
    # … and an older deriver (a worker not yet upgraded) appends nothing after it
    assert (await lg.publish(v1.model_copy(update={"causation": 11}))).duplicate
    facts = await _on(lg, f"photos.content.{H1}.ExifExtracted")
    assert [(e.fields.make, e.fact_version) for e in facts] == [("Old", 1), ("New", 2)]
    assert await lg.last_fact(f"photos.content.{H1}.ExifExtracted") == (got.seq, 2)


async def test_concurrent_writers_of_one_fact_append_it_once(event_log: EventLog) -> None:
    facts = [
        ThumbnailReady(content_hash=H2, sizes={"s": f"{i}.jpg"}, causation=i, deriver_version=2)
        for i in range(1, 9)
    ]
    results = await asyncio.gather(*(event_log.publish(f) for f in facts))
    assert sum(not r.duplicate for r in results) == 1
    assert len(await _on(event_log, f"photos.content.{H2}.ThumbnailReady")) == 1


# ------------------------------------------------------------------ the read model


def _conn(tmp_path: Path) -> sqlite3.Connection:
    return readmodel.open_writer(tmp_path / "rm.sqlite")


def test_a_newer_fact_replaces_the_older_and_an_older_one_never_the_newer(
    tmp_path: Path,
) -> None:
    conn = _conn(tmp_path)
    make = lambda: conn.execute("SELECT make FROM media").fetchall()  # noqa: E731
    apply(conn, 1, ExifExtracted(content_hash=H1, fields={"make": "Old"}))
    assert make() == [("Old",)]  # the old fact serves until the new one lands
    apply(conn, 2, ExifExtracted(content_hash=H1, fields={"make": "New"}, deriver_version=2))
    assert make() == [("New",)]
    apply(conn, 3, ExifExtracted(content_hash=H1, fields={"make": "Late"}))  # older version
    assert make() == [("New",)]
    apply(conn, 4, ThumbnailReady(content_hash=H1, sizes={"s": "a"}, width=10, height=5))
    apply(conn, 5, ThumbnailReady(content_hash=H1, sizes={"s": "b"}, width=20, height=10,
                                  deriver_version=2))  # fmt: skip
    apply(conn, 6, ThumbnailReady(content_hash=H1, sizes={"s": "c"}, width=1, height=1))
    assert conn.execute("SELECT width, sizes FROM thumbnails").fetchall() == [
        (20, json.dumps({"s": "b"}))
    ]
    pl = PlaylistReady(
        content_hash=H2, playlist_path="p", duration=1.0, segments=1, codecs="avc1",
        mode="remux",
    )  # fmt: skip
    apply(conn, 7, pl.model_copy(update={"duration": 3.0, "deriver_version": 3}))
    apply(conn, 8, pl)
    assert conn.execute("SELECT duration FROM playlists").fetchall() == [(3.0,)]
    box = FaceBox(box=(0.1, 0.1, 0.3, 0.3), score=0.9, landmarks=[], embedding=[0.0])
    apply(conn, 9, FacesDetected(content_hash=H1, model="m", faces=[box, box]))
    moved = box.model_copy(update={"box": (0.2, 0.2, 0.4, 0.4)})
    apply(conn, 10, FacesDetected(content_hash=H1, model="m", faces=[moved], deriver_version=2))
    apply(conn, 11, FacesDetected(content_hash=H1, model="m", faces=[box, box, box]))
    assert conn.execute("SELECT faces FROM face_scans").fetchall() == [(1,)]
    assert conn.execute("SELECT idx, box FROM faces").fetchall() == [
        (0, json.dumps([0.2, 0.2, 0.4, 0.4]))
    ]


def _old_body(event: Event) -> bytes:
    """What the encoder wrote before deriver versions: no deriver_version field."""
    body = json.loads(encode(event))
    body.pop("deriver_version", None)
    return json.dumps(body, separators=(",", ":")).encode()


def _history() -> list[Event]:
    seen = _seen(1)
    box = FaceBox(box=(0.1, 0.1, 0.3, 0.3), score=0.9, landmarks=[(0.1, 0.2)], embedding=[1.0])
    return [
        seen,
        _hashed(1, 1),
        ExifExtracted(content_hash=H1, fields={"make": "Cam", "width": 4}, causation=2),
        ThumbnailReady(content_hash=H1, sizes={"s": "x.jpg"}, width=4, height=3, causation=2),
        FacesDetected(content_hash=H1, model="dlib", faces=[box], causation=2),
        PlaylistReady(
            content_hash=H2, playlist_path="p/index.m3u8", duration=2.0, segments=1,
            codecs="avc1", mode="remux", causation=2,
        ),
    ]  # fmt: skip


async def _rebuilt(lg: EventLog, directory: Path) -> dict[str, list[tuple[object, ...]]]:
    path, _ = await rebuild(lg, directory, process=False)
    conn = readmodel.open_reader(path)
    try:
        return readmodel.dump(conn)
    finally:
        conn.close()


async def test_a_log_written_before_deriver_versions_rebuilds_to_the_same_read_model(
    tmp_path: Path, nats_server: EmbeddedNats
) -> None:
    old = await EventLog.connect(nats_server.url, stream="OLD", prefix="old")
    new = await EventLog.connect(nats_server.url, stream="NEW", prefix="new")
    try:
        for lg in (old, new):
            await lg.ensure_stream()
        for ev in _history():
            # the old log: the bodies (and headers) as the encoder wrote them before
            hdrs = {HDR_TYPE: ev.type, HDR_VERSION: "1"}  # type: ignore[attr-defined]
            await old.publish_raw(ev.subject("old"), _old_body(ev), hdrs)
            await new.publish(ev)
        raws = [r async for b in old.read() for r in b]
        decoded = [decode(r.data, r.headers) for r in raws]
        assert all(e.fact_version == 1 for e in decoded)
        assert all(b"deriver_version" not in r.data for r in raws)
        got_old = await _rebuilt(old, tmp_path / "old")
        got_new = await _rebuilt(new, tmp_path / "new")
        assert got_old == got_new
        assert got_old["media"] and got_old["thumbnails"] and got_old["playlists"]
        assert got_old["faces"] and got_old["fact_versions"] == []
    finally:
        await old.close()
        await new.close()
