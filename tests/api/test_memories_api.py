"""GET /memories (issue 16): photos taken on this day in earlier years, one per burst,
best first, mtime-only dates left out. Real events through the real projector into
SQLite; the favourite and the faces that rank them are real events too."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import date
from typing import Any

from litestar.testing import TestClient

from eventsvc.core.events import Event, ExifExtracted, Favorited, MediaFacts
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings
from projections.api.memories import parse_day
from projections.app import create_app
from projections.projector import Projector, rebuild

from .conftest import ReadModel, h, hashed, online, seen, thumbnailed
from .http import bad, ok
from .test_duplicates_api import eventually, serve_here
from .test_people_api import faces
from .test_tags_api import _caught_up

THIS_YEAR = date.today().year


def shot(n: int, path: str, taken: str | None, phash: str, *, mtime_s: int = 1_700_000_000,
         source: str = "exif_original") -> list[Event]:  # fmt: skip
    """Content ``n`` at ``path``, taken at ``taken`` (EXIF; None: no date of its own)."""
    fs = seen("alpha", path, size=100 + n, mtime_s=mtime_s)
    evs: list[Event] = [fs, hashed(fs, h(n))]
    if taken is not None:
        evs.append(ExifExtracted(content_hash=h(n), fields=MediaFacts(), date_taken=taken,
                                 date_source=source))  # fmt: skip
    evs.append(thumbnailed(h(n), width=640, height=480, phash=phash, dhash=phash))
    return evs


def day_events() -> list[Event]:
    return [
        online("alpha"),
        # 2020-06-01: A and B five seconds apart (one burst; B has a face, so B shows);
        *shot(1, "2020/a.jpg", "2020-06-01T10:00:00", "00ff00ff00ff00ff"),
        *shot(2, "2020/b.jpg", "2020-06-01T10:00:05", "ff00ff00ff00ff00"), faces(2),
        # C and D hours apart but near-duplicates (pHash 2 bits apart): D, a favourite;
        *shot(3, "2020/c.jpg", "2020-06-01T15:00:00", "0000000000000000"),
        *shot(4, "2020/d.jpg", "2020-06-01T18:00:00", "0000000000000003"),
        Favorited(content_hash=h(4)),
        # E alone, far from every other in time and pHash.
        *shot(5, "2020/e.jpg", "2020-06-01T20:00:00.250", "ffffffffffffffff"),
        # 2021-06-01 (a date with an offset, as some cameras write it).
        *shot(6, "2021/f.jpg", "2021-06-01T09:00:00+02:00", "0f0f0f0f0f0f0f0f"),
        # Not memories: another day; this year; a date that is only the file's mtime.
        *shot(7, "2022/other-day.jpg", "2022-06-02T09:00:00", "f0f0f0f0f0f0f0f0"),
        *shot(8, "now/this-year.jpg", f"{THIS_YEAR}-06-01T09:00:00", "3333333333333333"),
        # (mtime 2019-06-01 12:00Z)
        *shot(9, "x/plain.jpg", None, "5555555555555555", mtime_s=1_559_390_400),
    ]  # fmt: skip


def _pick(body: dict[str, Any]) -> list[tuple[int, list[tuple[str, int, bool, int]]]]:
    return [
        (y["year"], [(i["path"], i["burst"], i["favorite"], i["faces"]) for i in y["items"]])
        for y in body["years"]
    ]


def test_memories_one_per_burst_best_first_other_years_no_mtime_dates(
    model: ReadModel, client: TestClient[Any]
) -> None:
    model.add(*day_events()).publish()
    # The mtime-only photo is dated 2019-06-01 (date_source 'filesystem'), yet no memory.
    plain = [i for i in ok(client, "/photos")["items"] if i["path"] == "x/plain.jpg"]
    assert [(i["date_taken"][:10], i["date_source"]) for i in plain] == [
        ("2019-06-01", "filesystem")
    ]
    body = ok(client, "/memories", date="06-01")
    assert body["date"] == "06-01"
    assert _pick(body) == [
        (2021, [("2021/f.jpg", 1, False, 0)]),
        (2020, [("2020/d.jpg", 2, True, 0), ("2020/b.jpg", 2, False, 1),
                ("2020/e.jpg", 1, False, 0)]),
    ]  # fmt: skip
    item = body["years"][1]["items"][0]
    assert item["content_hash"] == h(4) and item["date_source"] == "exif_original"
    assert item["thumbnail"] == f"/photos/{h(4)}/thumbnail?size=small"
    assert _pick(ok(client, "/memories", date="06-02")) == [
        (2022, [("2022/other-day.jpg", 1, False, 0)])
    ]
    assert ok(client, "/memories", date="12-24")["years"] == []


def test_burst_settings_change_the_grouping(model: ReadModel, settings: Settings) -> None:
    model.add(*day_events()).publish()
    tight = settings.model_copy(update={"memories_burst_seconds": 1, "memories_near_distance": 0})
    with TestClient(create_app(tight), base_url="http://127.0.0.1") as c:
        paths = [[i["path"] for i in y["items"]] for y in ok(c, "/memories", date="06-01")["years"]]
    assert paths == [["2021/f.jpg"], ["2020/d.jpg", "2020/b.jpg", "2020/a.jpg", "2020/c.jpg",
                                      "2020/e.jpg"]]  # fmt: skip


def test_memories_date_parameter(client: TestClient[Any]) -> None:
    today = date.today()
    assert ok(client, "/memories")["date"] == today.strftime("%m-%d")
    assert parse_day(None, date(2024, 2, 29)) == ("02-29", 2024)
    assert parse_day("02-29", date(2025, 3, 1)) == ("02-29", 2025)
    for wrong in ("2-29", "02-30", "13-01", "06-01x", "0601"):
        assert "date" in bad(client, "/memories", date=wrong), wrong


async def test_memories_and_a_favourite_through_nats_survive_a_rebuild(
    nats_url: str, settings: Settings
) -> None:
    log = await EventLog.connect(nats_url)
    stop = asyncio.Event()
    projector = None
    try:
        await log.ensure_stream()
        for ev in day_events():
            await log.publish(ev)
        projector = asyncio.create_task(Projector(log, settings.readmodel_dir).run(stop))
        await eventually(lambda: _caught_up(settings, 1))
        async with serve_here(create_app(settings, event_log=log)) as c:

            async def picks() -> Any:
                r = await c.get("/memories", params={"date": "06-01"})
                assert r.status_code == 200, r.text
                return r.json()

            await eventually(lambda: _settled(c))
            before = _pick(await picks())
            assert before[1][1][1][0] == "2020/b.jpg"  # B: the face wins its burst
            # A favourite A (B's burst) now wins the burst, and leads its year.
            r = await c.put(f"/photos/{h(1)}/favorite")
            assert r.status_code == 202, r.text
            await eventually(lambda: _caught_up(settings, r.json()["seqs"][0]))
            live = await picks()
            assert _pick(live)[1][1][:2] == [("2020/a.jpg", 2, True, 0), ("2020/d.jpg", 2, True, 0)]
            stop.set()
            await projector
            projector = None
            await rebuild(log, settings.readmodel_dir, process=False)
            assert await picks() == live
    finally:
        stop.set()
        if projector is not None:
            projector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await projector
        await log.close()


async def _settled(c: Any) -> bool:
    r = await c.get("/memories", params={"date": "06-01"})
    return r.status_code == 200 and len(r.json()["years"]) == 2
