"""Tags and favourites (issue 16): user tags beside person names, the tag and favourite
filters, GET /tags, and the write endpoints. Real events through the real projector into
SQLite; the writes go through a real nats-server and survive a rebuild."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from litestar.testing import TestClient

from eventsvc.core.events import (
    Event,
    Favorited,
    PersonNamed,
    TagAdded,
    TagRemoved,
    Unfavorited,
    decode,
)
from eventsvc.core.log import EventLog
from eventsvc.core.settings import Settings
from projections import readmodel
from projections.app import create_app
from projections.projector import Projector, rebuild

from .conftest import ReadModel, h
from .http import bad, ok
from .test_duplicates_api import eventually, serve_here
from .test_people_api import people_events, pid


def _paths(client: TestClient[Any], **q: Any) -> list[str]:
    return [i["path"] for i in ok(client, "/photos", **q)["items"]]


def _user_tags() -> list[Event]:
    """Over people_events (person 1 'Anna' on 1-4): user tags on 1, 2, 5 and a favourite."""
    return [
        PersonNamed(person_id=pid(1), name="Anna"),
        TagAdded(content_hash=h(1), tag="  Beach  "),
        TagAdded(content_hash=h(2), tag="beach"),  # the same tag, another spelling
        TagAdded(content_hash=h(2), tag="Summer 2020 "),
        TagAdded(content_hash=h(5), tag="Summer 2020"),
        TagAdded(content_hash=h(5), tag="anna"),  # a user tag that is also a person's name
        TagAdded(content_hash=h(6), tag="gone"),
        TagRemoved(content_hash=h(6), tag="GONE"),
        Favorited(content_hash=h(2)),
        Favorited(content_hash=h(5)),
        Unfavorited(content_hash=h(5)),
    ]


def test_tags_filters_and_sources(model: ReadModel, client: TestClient[Any]) -> None:
    model.add(*people_events(), *_user_tags()).publish()
    tags = {i["path"]: i["tags"] for i in ok(client, "/photos")["items"]}
    assert tags == {
        "p/1.jpg": ["Anna", "Beach"], "p/2.jpg": ["Anna", "beach", "Summer 2020"],
        "p/3.jpg": ["Anna"], "p/4.jpg": ["Anna"], "p/5.jpg": ["anna", "Summer 2020"],
        "p/6.jpg": [],
    }  # fmt: skip
    assert ok(client, f"/photos/{h(2)}")["tags"] == ["Anna", "beach", "Summer 2020"]
    detail = ok(client, f"/photos/{h(5)}/tags")
    assert detail == {
        "content_hash": h(5), "favorite": False,
        "tags": [{"name": "anna", "sources": ["user"]},
                 {"name": "Summer 2020", "sources": ["user"]}],
    }  # fmt: skip
    detail = ok(client, f"/photos/{h(1)}/tags")
    assert detail["tags"] == [
        {"name": "Anna", "sources": ["person"]}, {"name": "Beach", "sources": ["user"]},
    ]  # fmt: skip
    assert ok(client, f"/photos/{h(2)}/tags")["favorite"] is True

    # One tag: a person's name or a user tag, case-insensitively, white space around dropped.
    assert _paths(client, tag="BEACH") == ["p/1.jpg", "p/2.jpg"]
    assert _paths(client, tag="anna") == [f"p/{n}.jpg" for n in range(1, 6)]
    assert _paths(client, tag=" summer 2020 ") == ["p/2.jpg", "p/5.jpg"]
    assert _paths(client, tag="summer  2020") == []  # inner white space is part of the name
    assert _paths(client, tag="gone") == []
    # Several: all of them (the default) or any.
    assert _paths(client, tag=["beach", "summer 2020"]) == ["p/2.jpg"]
    assert _paths(client, tag=["beach", "summer 2020"], tag_mode="and") == ["p/2.jpg"]
    assert _paths(client, tag=["beach", "summer 2020"], tag_mode="or") == [
        "p/1.jpg", "p/2.jpg", "p/5.jpg",
    ]  # fmt: skip
    assert _paths(client, tag=["Beach", "nobody"], tag_mode="or") == ["p/1.jpg", "p/2.jpg"]
    assert _paths(client, tag=["Beach", "nobody"]) == []
    # Favourites, alone and with tags.
    assert _paths(client, favorite="true") == ["p/2.jpg"]
    assert _paths(client, favorite="false") == ["p/1.jpg", "p/3.jpg", "p/4.jpg", "p/5.jpg",
                                                "p/6.jpg"]  # fmt: skip
    assert _paths(client, favorite="true", tag="summer 2020") == ["p/2.jpg"]
    assert _paths(client, favorite="false", tag="summer 2020") == ["p/5.jpg"]
    assert "tag" in bad(client, "/photos", tag=["beach", "  "])
    assert "tag_mode" in bad(client, "/photos", tag="beach", tag_mode="xor")


def test_get_tags_counts_contents_with_a_live_file(
    model: ReadModel, client: TestClient[Any]
) -> None:
    model.add(*people_events(), *_user_tags()).publish()
    assert ok(client, "/tags")["items"] == [
        {"name": "Anna", "count": 5, "sources": ["person", "user"]},
        {"name": "Beach", "count": 2, "sources": ["user"]},
        {"name": "Summer 2020", "count": 2, "sources": ["user"]},
    ]
    assert ok(client, f"/photos/{h(6)}/tags")["tags"] == []


def test_write_errors_without_nats(model: ReadModel, client: TestClient[Any]) -> None:
    model.add(*people_events()).publish()
    r = client.post(f"/photos/{h(99)}/tags", json={"tag": "x"})
    assert r.status_code == 404, r.text
    r = client.post(f"/photos/{h(1)}/tags", json={"tag": "   "})
    assert r.status_code == 400 and "tag" in r.json()["detail"]
    r = client.post(f"/photos/{h(1)}/tags", json={"tag": "two\nlines"})
    assert r.status_code == 400 and "control" in r.json()["detail"]
    r = client.post(f"/photos/{h(1)}/tags", json={"tag": "x" * 201})
    assert r.status_code == 400 and "200" in r.json()["detail"]
    r = client.post(f"/photos/{h(1)}/tags", json={"tag": "2020/summer"})
    assert r.status_code == 400 and "/" in r.json()["detail"]
    r = client.post(f"/photos/{h(1)}/tags", json={"tag": "x", "more": 1})
    assert r.status_code == 400
    r = client.post(f"/photos/{h(1)}/tags", content=b"tag=x",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 415
    r = client.delete(f"/photos/{h(1)}/tags/nothing")
    assert r.status_code == 404, r.text  # no such user tag
    assert client.put(f"/photos/{h(1)}/favorite").status_code == 503  # no NATS here
    assert client.get("/photos/nothex/tags").status_code == 400


async def _caught_up(settings: Settings, seq: int) -> bool:
    path = readmodel.current_path(settings.readmodel_dir)
    if path is None or not path.exists():
        return False
    conn = readmodel.open_reader(path)
    try:
        return readmodel.checkpoint(conn) >= seq
    finally:
        conn.close()


async def _snapshot(c: httpx.AsyncClient) -> dict[str, Any]:
    async def get(url: str, **params: Any) -> Any:
        r = await c.get(url, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    return {
        "tags": await get("/tags"),
        "photos": [(i["path"], i["tags"]) for i in (await get("/photos"))["items"]],
        "fav": [i["path"] for i in (await get("/photos", favorite="true"))["items"]],
        "detail": [await get(f"/photos/{h(n)}/tags") for n in range(1, 7)],
    }


async def test_writes_through_nats_survive_a_rebuild(nats_url: str, settings: Settings) -> None:
    log = await EventLog.connect(nats_url)
    stop = asyncio.Event()
    projector = None
    try:
        await log.ensure_stream()
        for ev in [*people_events(), PersonNamed(person_id=pid(1), name="Anna")]:
            await log.publish(ev)
        base = await log.last_seq()
        projector = asyncio.create_task(Projector(log, settings.readmodel_dir).run(stop))
        await eventually(lambda: _caught_up(settings, base))
        async with serve_here(create_app(settings, event_log=log)) as c:
            r = await c.post(f"/photos/{h(1)}/tags", json={"tag": " Beach "})
            assert r.status_code == 202, r.text
            assert r.json() == {"seqs": [base + 1], "duplicate": False, "content_hash": h(1),
                                "tag": "Beach", "favorite": None}  # fmt: skip
            key = {"Idempotency-Key": "req-1"}
            r = await c.post(f"/photos/{h(2)}/tags", json={"tag": "beach"}, headers=key)
            assert r.status_code == 202 and r.json()["seqs"] == [base + 2]
            r = await c.post(f"/photos/{h(2)}/tags", json={"tag": "beach"}, headers=key)
            assert r.json()["duplicate"] is True and r.json()["seqs"] == [base + 2]
            for n in (3, 5):
                r = await c.post(f"/photos/{h(n)}/tags", json={"tag": "Summer"})
                assert r.status_code == 202, r.text
            assert (await c.put(f"/photos/{h(3)}/favorite")).status_code == 202
            assert (await c.put(f"/photos/{h(5)}/favorite")).status_code == 202
            last = await log.last_seq()
            await eventually(lambda: _caught_up(settings, last))
            r = await c.delete(f"/photos/{h(5)}/tags/{quote('SUMMER')}")
            assert r.status_code == 202, r.text
            r = await c.delete(f"/photos/{h(5)}/favorite")
            assert r.status_code == 202 and r.json()["favorite"] is False
            last = await log.last_seq()
            await eventually(lambda: _caught_up(settings, last))
            live = await _snapshot(c)
            assert live["tags"]["items"] == [
                {"name": "Anna", "count": 4, "sources": ["person"]},
                {"name": "Beach", "count": 2, "sources": ["user"]},
                {"name": "Summer", "count": 1, "sources": ["user"]},
            ]
            assert live["fav"] == ["p/3.jpg"]
            assert dict(live["photos"])["p/5.jpg"] == []

            # What went into the log: the decisions on the contents' subjects.
            raws = [raw async for batch in log.read(start_seq=base + 1) for raw in batch]
            kinds = [raw.subject.rsplit(".", 1)[-1] for raw in raws]
            assert kinds == ["TagAdded"] * 4 + ["Favorited"] * 2 + ["TagRemoved", "Unfavorited"]
            assert raws[0].subject == f"photos.content.{h(1)}.TagAdded"
            assert decode(raws[0].data, raws[0].headers) == TagAdded(
                content_hash=h(1), tag="Beach", occurred_at=decode(raws[0].data).occurred_at
            )

            stop.set()
            await projector
            projector = None
            await rebuild(log, settings.readmodel_dir, process=False)
            assert await _snapshot(c) == live
    finally:
        stop.set()
        if projector is not None:
            projector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await projector
        await log.close()


def test_openapi_documents_tags(client: TestClient[Any], tmp_path: Path) -> None:
    spec = ok(client, "/schema/openapi.json")
    names = {p["name"] for p in spec["paths"]["/photos"]["get"]["parameters"]}
    assert {"tag", "tag_mode", "favorite"} <= names
    for path in ("/tags", "/photos/{content_hash}/tags", "/photos/{content_hash}/favorite",
                 "/photos/{content_hash}/tags/{tag}", "/memories"):  # fmt: skip
        assert path in spec["paths"], path
