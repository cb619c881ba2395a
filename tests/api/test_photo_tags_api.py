"""The auto-bind of issue 5: a named person's photos carry that name as a tag, in /photos
items, photo details and search hits, and ``?tag=`` filters by it. Real events through
the real projector into SQLite, one publish per step."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from eventsvc.core.events import (
    ClipEncoded,
    Event,
    FaceAssigned,
    FaceRejected,
    PeopleMerged,
    PersonCreated,
    PersonHidden,
    PersonNamed,
)
from eventsvc.core.settings import Settings
from eventsvc.inference.models import ConfiguredClip, clip_backend
from projections.app import create_app
from tests.clip.tiny import DIM, make_tiny_clip

from .conftest import ReadModel, h, hashed, seen
from .http import bad, ok
from .test_people_api import faces, fid, people_events, pid


def _unnamed() -> list[Event]:
    """people_events without its PersonNamed, plus content 7 with a face of unnamed
    person 4: persons 1 (faces of 1-4), 2 (5, 6), 3 (hidden, second face of 6), 4 (7)."""
    evs = [e for e in people_events() if not isinstance(e, PersonNamed)]
    fs = seen("alpha", "p/7.jpg", size=107)
    return [
        *evs, fs, hashed(fs, h(7)), faces(7),
        PersonCreated(person_id=pid(4), founder=fid(7)),
        FaceAssigned(face_id=fid(7), person_id=pid(4), content_hash=h(7)),
    ]  # fmt: skip


def _tags(client: TestClient[Any], **q: Any) -> dict[str, list[str]]:
    return {i["path"]: i["tags"] for i in ok(client, "/photos", **q)["items"]}


def _people(client: TestClient[Any], n: int) -> list[tuple[str, str | None, str]]:
    detail = ok(client, f"/photos/{h(n)}")
    return [(p["person_id"], p["name"], p["face_id"]) for p in detail["people"]]


def test_tags_follow_names_hiding_rejections_and_merges(
    model: ReadModel, client: TestClient[Any]
) -> None:
    model.add(*_unnamed()).publish()
    assert _tags(client) == {f"p/{n}.jpg": [] for n in range(1, 8)}
    # Detail lists assigned faces, named or not; the hidden person's face is left out.
    assert _people(client, 6) == [(pid(2), None, fid(6))]
    assert _people(client, 7) == [(pid(4), None, fid(7))]
    assert ok(client, f"/photos/{h(7)}")["tags"] == []

    model.add(PersonNamed(person_id=pid(1), name="Anna")).publish()
    assert _tags(client) == {
        "p/1.jpg": ["Anna"], "p/2.jpg": ["Anna"], "p/3.jpg": ["Anna"], "p/4.jpg": ["Anna"],
        "p/5.jpg": [], "p/6.jpg": [], "p/7.jpg": [],
    }  # fmt: skip

    # A hidden person is no tag, even named; shown again, it is (sorted case-insensitively).
    model.add(PersonNamed(person_id=pid(2), name="bob"), PersonNamed(person_id=pid(3), name="Zed"))
    model.publish()
    assert _tags(client)["p/6.jpg"] == ["bob"]
    model.add(PersonHidden(person_id=pid(3), hidden=False)).publish()
    assert _tags(client)["p/6.jpg"] == ["bob", "Zed"]
    detail = ok(client, f"/photos/{h(6)}")
    assert detail["tags"] == ["bob", "Zed"]
    assert detail["people"] == [
        {"person_id": pid(2), "name": "bob", "face_id": fid(6)},
        {"person_id": pid(3), "name": "Zed", "face_id": fid(6, 1)},
    ]

    # A rename changes the tag; a rejected face drops it from that photo only.
    model.add(PersonNamed(person_id=pid(1), name="Carla"), FaceRejected(face_id=fid(2))).publish()
    tags = _tags(client)
    assert [tags[f"p/{n}.jpg"] for n in range(1, 5)] == [["Carla"], [], ["Carla"], ["Carla"]]
    assert ok(client, f"/photos/{h(2)}")["people"] == []
    assert ok(client, f"/photos/{h(2)}")["tags"] == []

    model.add(PersonHidden(person_id=pid(2), hidden=True)).publish()
    tags = _tags(client)
    assert tags["p/5.jpg"] == [] and tags["p/6.jpg"] == ["Zed"]
    assert _people(client, 6) == [(pid(3), "Zed", fid(6, 1))]

    # Merges into a named person: the unnamed 4 and the named 3 take Carla's name.
    model.add(PeopleMerged(source=pid(4), target=pid(1)))
    model.add(PeopleMerged(source=pid(3), target=pid(1))).publish()
    assert _tags(client) == {
        "p/1.jpg": ["Carla"], "p/2.jpg": [], "p/3.jpg": ["Carla"], "p/4.jpg": ["Carla"],
        "p/5.jpg": [], "p/6.jpg": ["Carla"], "p/7.jpg": ["Carla"],
    }  # fmt: skip
    assert _people(client, 7) == [(pid(1), "Carla", fid(7))]
    # Two faces of one person (the hidden 2 merged into 1): the tag once, both faces listed.
    model.add(PeopleMerged(source=pid(2), target=pid(1))).publish()
    assert ok(client, f"/photos/{h(6)}")["tags"] == ["Carla"]
    assert _people(client, 6) == [(pid(1), "Carla", fid(6)), (pid(1), "Carla", fid(6, 1))]
    assert _tags(client)["p/5.jpg"] == ["Carla"]


def test_tag_filter_is_a_name_and_combines(model: ReadModel, client: TestClient[Any]) -> None:
    model.add(*people_events(), PersonNamed(person_id=pid(3), name="Hid")).publish()
    paths = lambda **q: [i["path"] for i in ok(client, "/photos", **q)["items"]]  # noqa: E731
    assert paths(tag="anna") == ["p/1.jpg", "p/2.jpg", "p/3.jpg", "p/4.jpg"]
    assert paths(tag=" ANNA ", path_prefix="p/3") == ["p/3.jpg"]
    page = ok(client, "/photos", tag="Anna", sort="-path", limit=2)
    assert [(i["path"], i["tags"]) for i in page["items"]] == [
        ("p/4.jpg", ["Anna"]), ("p/3.jpg", ["Anna"]),
    ]  # fmt: skip
    rest = ok(client, "/photos", tag="Anna", sort="-path", limit=2, cursor=page["next"])
    assert [i["path"] for i in rest["items"]] == ["p/2.jpg", "p/1.jpg"] and rest["next"] is None
    assert paths(tag="Anna", person=pid(1)) == paths(tag="Anna")
    assert paths(tag="Anna", person=pid(2)) == []
    # The person filter still finds a hidden person by name; no tag names one.
    assert paths(person="Hid") == ["p/6.jpg"]
    assert paths(tag="Hid") == []
    assert paths(tag="Ann") == [] and paths(tag=pid(1)) == []  # a whole name, not an id
    assert "tag" in bad(client, "/photos", tag="  ")


def test_search_hits_carry_tags(model: ReadModel, settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"clip_model_dir": make_tiny_clip(tmp_path / "tiny")})

    async def version() -> str:
        backend = clip_backend(settings)
        try:
            return (await backend.info()).version
        finally:
            await backend.aclose()

    v = asyncio.run(version())

    def vec(*xs: float) -> list[float]:
        return [*xs, *[0.0] * (DIM - len(xs))]

    model.add(
        *people_events(),
        PersonNamed(person_id=pid(2), name="bob"),
        ClipEncoded(content_hash=h(1), model_version=v, dim=DIM, vector=vec(1.0)),
        ClipEncoded(content_hash=h(5), model_version=v, dim=DIM, vector=vec(1.0, 0.2)),
        ClipEncoded(content_hash=h(6), model_version=v, dim=DIM, vector=vec(0.0, 1.0)),
    ).publish()
    with TestClient(
        create_app(settings, clip=ConfiguredClip(settings)), base_url="http://127.0.0.1"
    ) as c:
        page = ok(c, "/photos/search", q="red", threshold=0.5)
        assert page["model_version"] == v
        assert [(i["content_hash"], i["tags"]) for i in page["items"]] == [
            (h(1), ["Anna"]), (h(5), ["bob"]),
        ]  # fmt: skip
        similar = ok(c, f"/photos/{h(1)}/similar", threshold=0.5)["items"]
        assert [(i["content_hash"], i["tags"]) for i in similar] == [(h(5), ["bob"])]
        # people filters select the candidates before ranking, as the metadata ones do
        for params in ({"person": "bob"}, {"tag": "BOB"}, {"person": pid(2)}):
            hits = ok(c, "/photos/search", q="red", threshold=0.5, **params)["items"]
            assert [i["content_hash"] for i in hits] == [h(5)], params
        assert ok(c, "/photos/search", q="red", threshold=0.5, tag="nobody")["items"] == []
        for lib in ("alpha", "ALPHA"):  # a library by id or by name (case-insensitive)
            hits = ok(c, "/photos/search", q="red", threshold=0.5, library=lib)["items"]
            assert [i["content_hash"] for i in hits] == [h(1), h(5)], lib
        assert ok(c, "/photos/search", q="red", threshold=0.5, library="Beta")["items"] == []


def test_openapi_documents_tags(client: TestClient[Any]) -> None:
    spec = ok(client, "/schema/openapi.json")
    schemas = spec["components"]["schemas"]
    for name in ("Photo", "PhotoDetail", "SearchHit"):
        assert "people" in schemas[name]["properties"]["tags"]["description"]
    for field in ("person_id", "name", "face_id"):
        assert schemas["PhotoPerson"]["properties"][field]["description"]
    params = {p["name"]: p for p in spec["paths"]["/photos"]["get"]["parameters"]}
    assert "person=NAME" in params["tag"]["description"]
