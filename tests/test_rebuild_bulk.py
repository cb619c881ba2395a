"""A rebuild's bulk load (issue 18, goal 4): the generation it builds through a
``BulkConnection`` (fact versions in memory, the date-taken waterfall deferred to one pass
at the end, query-only indexes built last) holds the same rows as the live projector's
incremental path, on the benchmark's realistic mix plus the cases the deferral touches.
Real SQLite; the NATS path of a rebuild is tests/test_pipeline.py's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench.eventmix import make_mix
from eventsvc.core.events import (
    Event,
    ExifExtracted,
    FaceBox,
    FacesDetected,
    FileSeen,
    HashComputed,
    MediaFacts,
    encode,
    headers_for,
)
from eventsvc.core.ids import file_id
from eventsvc.core.log import RawEvent
from projections import readmodel
from projections.applier import BatchApplier, FinishLoad, InlineApplier, ProcessApplier
from projections.projector import apply_batch, finish_load

BATCH = 400


def _raws(events: Sequence[Event]) -> list[RawEvent]:
    out = []
    for i, ev in enumerate(events):
        hdrs = headers_for(ev)
        del hdrs["Nats-Msg-Id"]
        out.append(RawEvent(i + 1, ev.subject("photos"), encode(ev), hdrs))
    return out


def _incremental(path: Path, raws: list[RawEvent]) -> dict[str, list[tuple[Any, ...]]]:
    conn = readmodel.open_writer(path)
    try:
        assert not isinstance(conn, readmodel.BulkConnection)
        for k in range(0, len(raws), BATCH):
            apply_batch(conn, raws[k : k + BATCH])
        return readmodel.dump(conn)
    finally:
        conn.close()


async def _bulk(
    path: Path, raws: list[RawEvent], finish: FinishLoad | None, *, process: bool = False
) -> dict[str, list[tuple[Any, ...]]]:
    applier: BatchApplier
    if process:
        applier = ProcessApplier(path, apply_batch, finish)
    else:
        applier = InlineApplier(path, apply_batch, finish)
        assert isinstance(applier.conn, readmodel.BulkConnection)
    for k in range(0, len(raws), BATCH):
        await applier.submit(raws[k : k + BATCH])
    assert await applier.finish() == raws[-1].seq
    conn = readmodel.open_writer(path)
    try:
        return readmodel.dump(conn)
    finally:
        conn.close()


def _date_cases() -> list[Event]:
    """A location hashed, then its content's EXIF date; one edited after it was hashed
    (its hash and so its EXIF date are dropped); a newer deriver's fact, then an older
    one arriving late (ignored); faces found again by a newer face deriver."""
    h1, h2 = "1" * 64, "2" * 64
    a = FileSeen(library_id="lib", file_id=file_id("lib", b"a.jpg"), path="a.jpg", size=10,
                 mtime_ns=10**18, media_kind="image")  # fmt: skip
    b = FileSeen(library_id="lib", file_id=file_id("lib", b"IMG_20200102_030405.jpg"),
                 path="IMG_20200102_030405.jpg", size=20, mtime_ns=2 * 10**18,
                 media_kind="image")  # fmt: skip
    b2 = b.model_copy(update={"size": 21})

    def hashed(f: FileSeen, h: str) -> HashComputed:
        return HashComputed(content_hash=h, library_id=f.library_id, file_id=f.file_id,
                            path=f.path, size=f.size, mtime_ns=f.mtime_ns,
                            media_kind="image")  # fmt: skip

    def exif(h: str, taken: str, version: int = 1) -> ExifExtracted:
        return ExifExtracted(content_hash=h, fields=MediaFacts(make="X", date_original=taken),
                             date_taken=taken, date_source="exif_original",
                             deriver_version=version)  # fmt: skip

    def faces(h: str, n: int, version: int) -> FacesDetected:
        box = FaceBox(box=(0.1, 0.1, 0.3, 0.4), score=0.9, landmarks=[(0.2, 0.2)] * 5,
                      embedding=[0.1] * 8)  # fmt: skip
        return FacesDetected(content_hash=h, model="m", faces=[box] * n,
                             deriver_version=version)  # fmt: skip

    return [
        a, b, hashed(a, h1), hashed(b, h2), exif(h1, "2001-01-01T00:00:00"),
        exif(h2, "2002-02-02T00:00:00"), b2, exif(h1, "2003-03-03T00:00:00", version=2),
        exif(h1, "1999-09-09T00:00:00", version=1), faces(h1, 2, 1), faces(h1, 1, 2),
        faces(h1, 3, 1),
    ]  # fmt: skip


@pytest.mark.parametrize("process", [False, True], ids=["inline", "process"])
async def test_bulk_load_equals_the_incremental_rows(tmp_path: Path, process: bool) -> None:
    events = [ev for ev, _ in make_mix(3000).items] + _date_cases()
    raws = _raws(events)
    want = _incremental(tmp_path / "live.db", raws)
    assert want["files"] and want["media"] and want["fact_versions"]
    assert want["faces"] and want["clip_vectors"] and want["user_tags"]
    got = await _bulk(tmp_path / "bulk.db", raws, finish_load, process=process)
    assert got == want


async def test_the_deferred_waterfall_is_what_makes_them_equal(tmp_path: Path) -> None:
    """Deferring without the last pass leaves the file names' and mtimes' dates: the
    comparison above can fail. A bulk writer defers only when given a finish."""
    raws = _raws(_date_cases())
    want = _incremental(tmp_path / "live.db", raws)
    applier = InlineApplier(tmp_path / "deferred.db", apply_batch, None)
    assert isinstance(applier.conn, readmodel.BulkConnection)
    assert not applier.conn.deferred_dates
    applier.conn.deferred_dates = True
    await applier.submit(raws)
    await applier.finish()
    conn = readmodel.open_writer(tmp_path / "deferred.db")
    try:
        got = readmodel.dump(conn)
    finally:
        conn.close()
    assert got["files"] != want["files"]
    assert [r[0] for r in got["files"]] == [r[0] for r in want["files"]]
    # without a finish nothing is deferred: the same rows
    assert await _bulk(tmp_path / "plain.db", raws, None) == want
