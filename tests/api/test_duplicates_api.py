"""Near duplicates from the pHashes of real JPEGs (re-encoded, resized, a burst), the
date window, and not-duplicate decisions published through a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from PIL import Image, ImageEnhance

from eventsvc.core.events import Event, NotDuplicate
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings
from projections import readmodel
from projections.api.paging import encode_cursor
from projections.app import create_app
from projections.near import hamming
from projections.projector import Projector

from .conftest import ReadModel, online
from .http import bad, ok
from .shots import Shot, scene, shoot

BURST_GAP = 3  # seconds between the first shot and the burst's next one


@dataclass
class Set:
    shots: dict[str, Shot]
    events: list[Event]

    def h(self, name: str) -> str:
        return self.shots[name].content_hash


def build_set(tmp_path: Path, settings: Settings) -> Set:
    """Library 'trip': a photo, its re-encode and resize (same EXIF date), a second shot
    of the burst (3 s later, camera moved a little) and an unrelated photo. Library
    'home': a photo and a brighter edit of it, a year apart."""
    trip, home = tmp_path / "trip", tmp_path / "home"
    thumbs = settings.thumbs_dir
    base = scene(1)
    when = {"make": "Canon", "model": "EOS R5", "taken": "2023-05-01T10:00:00"}
    shots = {
        "base": shoot(trip, "trip", "img/base.jpg", base, thumbs_dir=thumbs, quality=95,
                      exif=when),
        "reencoded": shoot(trip, "trip", "export/base_q40.jpg", base, thumbs_dir=thumbs,
                           quality=40, exif=when),
        "resized": shoot(trip, "trip", "web/base_small.jpg",
                         base.resize((240, 180), Image.Resampling.LANCZOS), thumbs_dir=thumbs,
                         exif=when),
        "burst": shoot(trip, "trip", "img/burst2.jpg", scene(1).crop((4, 0, 484, 360)),
                       thumbs_dir=thumbs, exif={**when, "taken": "2023-05-01T10:00:03"}),
        "unrelated": shoot(trip, "trip", "img/other.jpg", scene(2), thumbs_dir=thumbs,
                           exif={**when, "taken": "2023-05-01T10:00:01"}),
        "home": shoot(home, "home", "a.jpg", scene(4), thumbs_dir=thumbs,
                      exif={"taken": "2020-01-01T08:00:00"}),
        "home_edit": shoot(home, "home", "a_bright.jpg",
                           ImageEnhance.Brightness(scene(4)).enhance(1.1), thumbs_dir=thumbs,
                           exif={"taken": "2021-01-01T08:00:00"}),
    }  # fmt: skip
    events: list[Event] = [
        online("trip").model_copy(update={"root": str(trip)}),
        online("home").model_copy(update={"root": str(home)}),
    ]
    for shot in shots.values():
        events += shot.events
    return Set(shots, events)


@pytest.fixture
def photos(tmp_path: Path, settings: Settings) -> Set:
    s = build_set(tmp_path, settings)
    ph = {name: shot.phash for name, shot in s.shots.items()}
    assert all(ph.values())

    def d(a: str, b: str) -> int:
        return hamming(ph[a], ph[b])  # type: ignore[arg-type]

    # What the test relies on, from imagehash's pHash of these pictures.
    copies = ("base", "reencoded", "resized")
    assert all(d(a, b) <= 2 for a in copies for b in copies), ph
    assert all(1 <= d("burst", c) <= 6 for c in copies), ph
    assert d("home", "home_edit") <= 6, ph
    for other in ("unrelated", "home"):
        assert min(d(other, c) for c in (*copies, "burst")) > 16, ph
    return s


def groups(page: dict[str, Any], s: Set) -> list[set[str]]:
    names = {shot.content_hash: n for n, shot in s.shots.items()}
    return [{names[m["content_hash"]] for m in g["members"]} for g in page["items"]]


def pair_names(group: dict[str, Any], s: Set) -> set[frozenset[str]]:
    names = {shot.content_hash: n for n, shot in s.shots.items()}
    return {frozenset((names[p["a"]], names[p["b"]])) for p in group["pairs"]}


TRIP = {"base", "reencoded", "resized", "burst"}
COPIES = {"base", "reencoded", "resized"}


def test_near_groups_pairs_and_members(
    photos: Set, model: ReadModel, client: TestClient[Any]
) -> None:
    model.add(*photos.events).publish()
    page = ok(client, "/duplicates", kind="near")
    assert (page["kind"], page["max_distance"], page["window"], page["next"]) == (
        "near", 6, None, None,
    )  # fmt: skip
    assert groups(page, photos) == [TRIP, {"home", "home_edit"}]
    trip = page["items"][0]
    assert trip["count"] == 4
    assert pair_names(trip, photos) == {
        frozenset(p) for p in [*(("burst", c) for c in COPIES), ("base", "reencoded"),
                               ("base", "resized"), ("reencoded", "resized")]
    }  # fmt: skip
    for p in trip["pairs"]:
        assert p["a"] < p["b"]
        a = next(s for s in photos.shots.values() if s.content_hash == p["a"])
        b = next(s for s in photos.shots.values() if s.content_hash == p["b"])
        assert p["distance"] == hamming(a.phash, b.phash)  # type: ignore[arg-type]
        burst = photos.h("burst") in (p["a"], p["b"])
        assert p["seconds_apart"] == (BURST_GAP if burst else 0)
    assert [p["distance"] for p in trip["pairs"]] == sorted(p["distance"] for p in trip["pairs"])
    members = {m["content_hash"]: m for m in trip["members"]}
    base = photos.shots["base"]
    m = members[base.content_hash]
    assert m["date_taken"] == "2023-05-01T10:00:00" and m["phash"] == base.phash
    assert (m["width"], m["height"], m["media_kind"]) == (480, 360, "image")
    assert m["size"] == base.path.stat().st_size
    assert m["thumbnail"] == f"/photos/{base.content_hash}/thumbnail?size=small"
    assert [loc["path"] for loc in m["locations"]] == ["img/base.jpg"]
    assert members[photos.h("resized")]["width"] == 240
    # Members by date taken: the burst's second shot comes last.
    assert trip["members"][-1]["content_hash"] == photos.h("burst")
    # The exact kind is unchanged: no two locations share bytes here.
    assert ok(client, "/duplicates") == {"items": [], "next": None}


def test_window_tells_bursts_from_reencodes(
    photos: Set, model: ReadModel, client: TestClient[Any]
) -> None:
    model.add(*photos.events).publish()
    # Re-encodes and resizes keep the date: 0 s apart. The burst is 3 s on.
    assert groups(ok(client, "/duplicates", kind="near", window=0), photos) == [COPIES]
    assert groups(ok(client, "/duplicates", kind="near", window=2.5), photos) == [COPIES]
    page = ok(client, "/duplicates", kind="near", window=BURST_GAP)
    assert page["window"] == BURST_GAP and groups(page, photos) == [TRIP]
    # The home edit is a year after the original: a window of a day leaves it out.
    assert groups(ok(client, "/duplicates", kind="near", window=86400), photos) == [TRIP]
    assert len(ok(client, "/duplicates", kind="near", window=400 * 86400)["items"]) == 2


def test_distance_library_and_paging(
    photos: Set, model: ReadModel, client: TestClient[Any]
) -> None:
    model.add(*photos.events).publish()
    ph = {n: s.phash for n, s in photos.shots.items()}
    zero = ok(client, "/duplicates", kind="near", max_distance=0)
    # The groups at distance 0, worked out here from the pHashes: the connected sets of
    # shots whose hashes are equal. They must exist, or this part would prove nothing.
    same = [{n for n in ph if ph[n] == ph[m]} for m in ph]
    expected = {frozenset(g) for g in same if len(g) > 1}
    assert expected, ph
    assert {frozenset(g) for g in groups(zero, photos)} == expected
    assert len(zero["items"]) == len(expected)
    for g in zero["items"]:
        names = {m["content_hash"] for m in g["members"]}
        assert len(g["pairs"]) == len(names) * (len(names) - 1) // 2
        assert {p["distance"] for p in g["pairs"]} == {0}
    assert groups(ok(client, "/duplicates", kind="near", library="home"), photos) == [
        {"home", "home_edit"}
    ]
    assert groups(ok(client, "/duplicates", kind="near", library="trip"), photos) == [TRIP]
    assert ok(client, "/duplicates", kind="near", library="nope")["items"] == []
    first = ok(client, "/duplicates", kind="near", limit=1)
    assert groups(first, photos) == [TRIP] and first["next"]
    second = ok(client, "/duplicates", kind="near", limit=1, cursor=first["next"])
    assert groups(second, photos) == [{"home", "home_edit"}] and second["next"] is None
    # A cursor belongs to its kind, distance and window.
    detail = bad(client, "/duplicates", kind="near", max_distance=5, cursor=first["next"])
    assert "'cursor'" in detail
    assert "'cursor'" in bad(client, "/duplicates", cursor=first["next"])
    exact_cursor = encode_cursor({"w": 1, "h": "0" * 64})
    assert "'cursor'" in bad(client, "/duplicates", kind="near", cursor=exact_cursor)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"kind": "near", "max_distance": 17}, "max_distance"),
        ({"kind": "near", "max_distance": -1}, "max_distance"),
        ({"kind": "near", "max_distance": "six"}, "max_distance"),
        ({"kind": "near", "window": -1}, "window"),
        ({"kind": "near", "window": "soon"}, "window"),
        ({"max_distance": 3}, "max_distance"),
        ({"kind": "exact", "window": 10}, "window"),
        ({"kind": "similar"}, "kind"),
        ({"kind": "near", "limit": 0}, "limit"),
    ],
)
def test_duplicates_400s(client: TestClient[Any], params: dict[str, Any], name: str) -> None:
    assert f"'{name}'" in bad(client, "/duplicates", **params)


def test_not_duplicate_events_hide_pairs(
    photos: Set, model: ReadModel, client: TestClient[Any]
) -> None:
    """The projector's NotDuplicate rows, applied with apply_batch, hide the pairs."""
    h = photos.h
    model.add(*photos.events, NotDuplicate(a=h("burst"), b=h("base"))).publish()
    [trip, _] = ok(client, "/duplicates", kind="near")["items"]
    # The burst is still linked through the re-encode and the resize.
    assert trip["count"] == 4
    assert frozenset(("base", "burst")) not in pair_names(trip, photos)
    model.add(
        NotDuplicate(a=h("reencoded"), b=h("burst")), NotDuplicate(a=h("burst"), b=h("resized"))
    ).publish()
    assert groups(ok(client, "/duplicates", kind="near"), photos) == [
        COPIES, {"home", "home_edit"},
    ]  # fmt: skip
    model.add(NotDuplicate(a=h("base"), b=h("burst"), undo=True)).publish()
    [trip, _] = ok(client, "/duplicates", kind="near")["items"]
    assert trip["count"] == 4 and frozenset(("base", "burst")) in pair_names(trip, photos)


# ------------------------------------------------------------------ POST/DELETE, real NATS


@contextlib.asynccontextmanager
async def serve_here(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


async def near_pairs(c: httpx.AsyncClient, s: Set) -> set[frozenset[str]]:
    r = await c.get("/duplicates", params={"kind": "near"})
    assert r.status_code == 200, r.text
    return set().union(*(pair_names(g, s) for g in r.json()["items"]))


async def eventually(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_post_not_duplicate_through_nats_and_projector(
    nats_url: str, photos: Set, settings: Settings
) -> None:
    log = await EventLog.connect(nats_url)
    stop = asyncio.Event()
    projector = None
    try:
        await log.ensure_stream()
        for ev in photos.events:
            await log.publish(ev)
        last = await log.last_seq()
        projector = asyncio.create_task(Projector(log, settings.readmodel_dir).run(stop))

        async def caught_up(seq: int) -> bool:
            path = readmodel.current_path(settings.readmodel_dir)
            if path is None or not path.exists():
                return False
            conn = readmodel.open_reader(path)
            try:
                return readmodel.checkpoint(conn) >= seq
            finally:
                conn.close()

        await eventually(lambda: caught_up(last))
        h = photos.h
        burst = frozenset(("base", "burst"))
        async with serve_here(create_app(settings, event_log=log)) as c:
            assert burst in await near_pairs(c, photos)
            r = await c.post("/duplicates/not-duplicate", json={"a": h("burst"), "b": h("base")})
            assert r.status_code == 202, r.text
            body = r.json()
            assert body == {
                "seq": last + 1, "duplicate": False, "a": min(h("burst"), h("base")),
                "b": max(h("burst"), h("base")), "undo": False,
            }  # fmt: skip

            async def hidden() -> bool:
                return burst not in await near_pairs(c, photos)

            await eventually(hidden)
            r = await c.delete("/duplicates/not-duplicate", params={"a": h("base"),
                                                                   "b": h("burst")})  # fmt: skip
            assert r.status_code == 202, r.text
            assert r.json()["undo"] is True and r.json()["seq"] == last + 2

            async def shown() -> bool:
                return burst in await near_pairs(c, photos)

            await eventually(shown)
            r = await c.post(
                "/duplicates/not-duplicate",
                json={"a": h("home"), "b": h("home_edit"), "undo": True},
            )
            assert r.status_code == 202 and r.json()["seq"] == last + 3
        # What went into the log: NotDuplicate events on the pair's subject.
        events = [raw async for batch in log.read(start_seq=last + 1) for raw in batch]
        assert [e.subject.rsplit(".", 1)[-1] for e in events] == ["NotDuplicate"] * 3
        assert events[0].subject.startswith("photos.pair.")
    finally:
        stop.set()
        if projector is not None:
            projector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await projector
        await log.close()


def test_not_duplicate_errors(photos: Set, model: ReadModel, client: TestClient[Any]) -> None:
    model.add(*photos.events).publish()
    h = photos.h
    url = "/duplicates/not-duplicate"

    def post(body: Any) -> tuple[int, str]:
        r = client.post(url, json=body)
        return r.status_code, r.json()["detail"]

    status, detail = post({"a": "nope", "b": h("base")})
    assert status == 400 and "'a'" in detail
    status, detail = post({"a": h("base"), "b": h("base").upper()})
    assert status == 400 and "'b'" in detail
    status, detail = post({"a": h("base"), "b": h("base")})
    assert status == 400 and "'b'" in detail and "same" in detail
    status, detail = post({"a": h("base")})
    assert status == 400 and "b" in detail
    status, detail = post({"a": h("base"), "b": h("burst"), "extra": 1})
    assert status == 400
    status, detail = post({"a": h("base"), "b": "f" * 64})
    assert status == 404 and "f" * 64 in detail
    # Valid and known, but this app has no NATS: 503 saying so.
    status, detail = post({"a": h("base"), "b": h("burst")})
    assert status == 503 and "NATS" in detail
    r = client.delete(url, params={"a": h("base"), "b": h("burst")})
    assert r.status_code == 503 and "NATS" in r.json()["detail"]
    r = client.delete(url, params={"a": h("base")})
    assert r.status_code == 400 and "'b'" in r.json()["detail"]
