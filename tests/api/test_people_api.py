"""GET /people, /faces and /photos?person= on read models built from real events: paging,
hidden and named people, merges (chains included), decisions that win over later
automatic assignments, and face crops from the original when there is no thumbnail."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
from litestar.testing import TestClient
from PIL import Image

from eventsvc.core.events import (
    Event,
    FaceAssigned,
    FaceBox,
    FaceReassigned,
    FaceRejected,
    FacesDetected,
    PeopleMerged,
    PersonCreated,
    PersonHidden,
    PersonNamed,
    face_id,
)
from eventsvc.core.settings import Settings

from .conftest import ReadModel, client_for, h, hashed, online, seen
from .http import bad, ok

MODEL = "dlib-hog-resnet-v1-test"


def faces(n: int, count: int = 1, box: tuple[float, float, float, float] = (0.3, 0.1, 0.5, 0.3)):
    return FacesDetected(
        content_hash=h(n), model=MODEL,
        faces=[FaceBox(box=box, score=1.0 + i / 10, landmarks=[(0.4, 0.2)] * 5,
                       embedding=[0.0] * 128) for i in range(count)],
    )  # fmt: skip


def fid(n: int, i: int = 0) -> str:
    return face_id(h(n), MODEL, i)


def pid(n: int) -> str:
    return f"p-{n:016x}"


def people_events() -> list[Event]:
    """Contents 1..6 at one location each; person 1 has faces of 1-4, person 2 of 5-6,
    person 3 (hidden) a face of 6 (the second one)."""
    evs: list[Event] = [online("alpha")]
    for n in range(1, 7):
        fs = seen("alpha", f"p/{n}.jpg", size=100 + n)
        evs += [fs, hashed(fs, h(n)), faces(n, 2 if n == 6 else 1)]
    evs += [PersonCreated(person_id=pid(1), founder=fid(1))]
    evs += [FaceAssigned(face_id=fid(n), person_id=pid(1), content_hash=h(n)) for n in range(1, 5)]
    evs += [PersonCreated(person_id=pid(2), founder=fid(5))]
    evs += [FaceAssigned(face_id=fid(n), person_id=pid(2), content_hash=h(n)) for n in (5, 6)]
    evs += [
        PersonCreated(person_id=pid(3), founder=fid(6, 1)),
        FaceAssigned(face_id=fid(6, 1), person_id=pid(3), content_hash=h(6)),
        PersonHidden(person_id=pid(3), hidden=True),
        PersonNamed(person_id=pid(1), name="Anna"),
    ]
    return evs


def test_people_list_paging_hidden_named(model: ReadModel, client: TestClient[Any]) -> None:
    model.add(*people_events()).publish()
    page = ok(client, "/people", limit=1)
    assert [p["person_id"] for p in page["items"]] == [pid(1)]
    anna = page["items"][0]
    assert anna["name"] == "Anna" and anna["face_count"] == 4 and anna["photo_count"] == 4
    assert anna["cover"]["face_id"] == fid(1)  # equal area x score: the smallest id
    page2 = ok(client, "/people", limit=1, cursor=page["next"])
    assert [p["person_id"] for p in page2["items"]] == [pid(2)] and page2["next"] is None
    every = ok(client, "/people", hidden="true")["items"]
    assert [p["person_id"] for p in every] == [pid(1), pid(2), pid(3)]
    assert every[2]["hidden"] is True
    assert [p["person_id"] for p in ok(client, "/people", named="true")["items"]] == [pid(1)]
    assert [p["person_id"] for p in ok(client, "/people", named="false")["items"]] == [pid(2)]
    assert "cursor" in bad(client, "/people", cursor="bm9wZQ")
    # Faces: by photo, by person, unassigned.
    six = ok(client, "/faces", content_hash=h(6))["items"]
    assert [(f["face_id"], f["person_id"]) for f in six] == [(fid(6), pid(2)), (fid(6, 1), pid(3))]
    assert ok(client, "/faces", unassigned="true")["items"] == []
    assert len(ok(client, "/faces", person=pid(1))["items"]) == 4
    assert "person" in bad(client, "/faces", person="anna")
    assert "unknown face" in bad(client, f"/faces/{fid(9)}", 404)


def test_photos_person_filter_combines(model: ReadModel, client: TestClient[Any]) -> None:
    model.add(*people_events()).publish()
    paths = lambda **q: [i["path"] for i in ok(client, "/photos", **q)["items"]]  # noqa: E731
    assert paths(person=pid(1)) == ["p/1.jpg", "p/2.jpg", "p/3.jpg", "p/4.jpg"]
    assert paths(person="ANNA") == paths(person=pid(1))  # the name binds as a tag
    assert paths(person="Anna", path_prefix="p/3") == ["p/3.jpg"]
    assert paths(person=pid(2), sort="-path") == ["p/6.jpg", "p/5.jpg"]
    assert paths(person="nobody") == []
    assert "person" in bad(client, "/photos", person=" ")


def test_merges_chain_and_decisions_win(model: ReadModel, client: TestClient[Any]) -> None:
    evs = people_events()
    evs += [
        PeopleMerged(source=pid(2), target=pid(3)),  # 2 -> 3
        PeopleMerged(source=pid(3), target=pid(1)),  # 3 -> 1: 2 now resolves to 1 as well
        FaceRejected(face_id=fid(1)),
        FaceReassigned(face_id=fid(2), person_id=pid(9), new_person=True),
        # Automatic results arriving later never undo decisions; they follow merges.
        FaceAssigned(face_id=fid(1), person_id=pid(1), content_hash=h(1)),
        FaceAssigned(face_id=fid(2), person_id=pid(1), content_hash=h(2)),
    ]
    model.add(*evs).publish()
    people = {p["person_id"]: p for p in ok(client, "/people", hidden="true")["items"]}
    assert set(people) == {pid(1), pid(9)}
    assert people[pid(1)]["face_count"] == 5 and people[pid(1)]["name"] == "Anna"
    assert people[pid(9)]["face_count"] == 1
    assert ok(client, f"/people/{pid(2)}")["person_id"] == pid(1)  # merged id resolves
    assert ok(client, f"/faces/{fid(1)}")["rejected"] is True
    assert ok(client, f"/faces/{fid(2)}")["assigned_by"] == "user"
    photos = ok(client, f"/people/{pid(2)}/photos", limit=2)
    assert len(photos["items"]) == 2 and photos["next"]
    rest = ok(client, f"/people/{pid(2)}/photos", cursor=photos["next"])["items"]
    assert {p["content_hash"] for p in photos["items"] + rest} == {h(3), h(4), h(5), h(6)}


def test_face_crop_from_the_original(tmp_path: Path, model: ReadModel, settings: Settings) -> None:
    with client_for(settings, alpha=tmp_path / "lib") as client:
        root = tmp_path / "lib"
        root.mkdir()
        path = root / "astro.jpg"
        Image.fromarray(skimage.data.astronaut()).save(path, quality=90)
        st = path.stat()
        fs = seen("alpha", "astro.jpg", size=st.st_size)
        fs = fs.model_copy(update={"mtime_ns": st.st_mtime_ns})
        box = (0.3418, 0.1484, 0.5195, 0.3262)  # what dlib finds
        model.add(
            online("alpha").model_copy(update={"root": str(root)}), fs, hashed(fs, h(7)),
            FacesDetected(content_hash=h(7), model=MODEL, faces=[
                FaceBox(box=box, score=1.2, landmarks=[(0.4, 0.2)] * 5, embedding=[0.0] * 128)]),
        ).publish()  # fmt: skip
        r = client.get(f"/faces/{face_id(h(7), MODEL, 0)}/thumbnail")
        assert r.status_code == 200, r.text
        crop = np.asarray(Image.open(io.BytesIO(r.content)))
        assert crop.shape[0] == crop.shape[1] and crop.shape[0] <= 256
        cached = list((settings.thumbs_dir / "faces").rglob("*.jpg"))
        assert len(cached) == 1
        path.unlink()  # the cache answers without the original
        assert client.get(f"/faces/{face_id(h(7), MODEL, 0)}/thumbnail").status_code == 200
        other = face_id(h(8), MODEL, 0)
        assert "unknown face" in bad(client, f"/faces/{other}/thumbnail", 404)


def test_openapi_documents_people(model: ReadModel, client: TestClient[Any]) -> None:
    spec = ok(client, "/schema/openapi.json")
    paths = {
        "/people", "/people/{person_id}", "/people/{person_id}/photos",
        "/people/{person_id}/merge", "/faces", "/faces/{face_id}/thumbnail",
        "/faces/{face_id}/reassign", "/faces/{face_id}/reject",
    }  # fmt: skip
    assert paths <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    for name in ("Person", "PersonPage", "Face", "FacePage", "PersonPhoto", "DecisionAccepted"):
        for field, prop in schemas[name]["properties"].items():
            assert prop.get("description"), f"{name}.{field} has no description"


def test_decisions_need_nats(model: ReadModel, client: TestClient[Any]) -> None:
    model.add(*people_events()).publish()
    r = client.patch(f"/people/{pid(1)}", json={"name": "Bob"})
    assert r.status_code == 503 and "cannot record" in r.json()["detail"]
    r = client.patch(f"/people/{pid(7)}", json={"name": "Bob"})
    assert r.status_code == 404
    r = client.patch(f"/people/{pid(1)}", json={"nom": "Bob"})
    assert r.status_code == 400
