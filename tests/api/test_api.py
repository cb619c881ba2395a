"""The read API against real read models (and a real nats-server for /pipeline)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient, TestClient

from eventsvc.core.log import ConsumerSpec, EventLog
from eventsvc.core.settings import Settings
from eventsvc.server import free_port
from projections import readmodel
from projections.app import create_app
from projections.projector import apply_batch

from .conftest import (
    A_GONE,
    A_IMG1,
    A_IMG2,
    A_PNG,
    A_VID,
    B_IMG1,
    B_IMG1B,
    B_VID,
    DHASH_1,
    PHASH_1,
    ReadModel,
    h,
    hashed,
    online,
    seen,
    small_events,
)
from .http import bad, ok


@contextlib.asynccontextmanager
async def serve_here(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan on the running loop, through httpx's ASGI transport."""
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


def paths(page: dict[str, Any]) -> list[str]:
    return [f"{i['library']}:{i['path']}" for i in page["items"]]


# ------------------------------------------------------------------ health, empty model


def test_empty_read_model_answers_empty_lists(client: TestClient[Any]) -> None:
    assert ok(client, "/healthz") == {"status": "ok"}
    for url in ("/libraries", "/photos", "/duplicates"):
        assert ok(client, url) == {"items": [], "next": None}
    assert "unknown content_hash" in bad(client, f"/photos/{h(1)}", 404)
    pipe = ok(client, "/pipeline")
    assert pipe["projector"] == {"generation": None, "checkpoint": 0, "lag": None}
    assert pipe["failures"] == {"total": 0, "by_stage": {}, "by_operation": {}, "recent": []}
    assert pipe["nats"] == {"connected": False, "error": "no NATS URL configured"}
    assert "error" in pipe["stream"]
    assert pipe["consumers"] == [] and pipe["extra"] is None


# ------------------------------------------------------------------ libraries


def test_libraries_counts_and_state(small: ReadModel, client: TestClient[Any]) -> None:
    page = ok(client, "/libraries")
    assert page["next"] is None
    alpha, beta = page["items"]
    assert alpha == {
        "library_id": "alpha", "name": "Alpha", "root": "/mnt/alpha", "state": "online",
        "reason": None, "state_since": "2024-05-01T12:00:00+00:00", "files": 4, "images": 3,
        "videos": 1, "hashed": 3, "bytes": 1000 + 2000 + 5000 + 300, "last_scan": None,
        "watch": None, "enabled": True, "health": "online", "excludes": [],
        "configured": False,
    }  # fmt: skip
    assert beta["state"] == "stale" and beta["reason"] == "root is empty"
    assert (beta["files"], beta["images"], beta["videos"], beta["hashed"]) == (3, 2, 1, 3)


# ------------------------------------------------------------------ photos


def test_photos_filters(small: ReadModel, client: TestClient[Any]) -> None:
    everything = ok(client, "/photos")
    assert paths(everything) == [
        "alpha:2023/img1.jpg", "alpha:2023/img2.jpg", "alpha:2024/clip.mp4",
        "alpha:2024/sub/x.png", "beta:copy.mp4", "beta:dup/img1.jpg", "beta:dup2/img1.jpg",
    ]  # fmt: skip
    assert everything["next"] is None
    first = everything["items"][0]
    assert first == {
        "file_id": A_IMG1.file_id, "library": "alpha", "path": "2023/img1.jpg", "size": 1000,
        "mtime_ns": A_IMG1.mtime_ns, "mtime": "2023-11-14T22:18:20+00:00",
        "media_kind": "image", "content_hash": h(1),
        "date_taken": "2023-11-14T22:18:20Z", "date_source": "filesystem", "width": 640,
        "height": 480, "make": None, "model": None, "gps": None,
        "thumbnail": f"/photos/{h(1)}/thumbnail?size=small",
        "tags": [],
    }  # fmt: skip
    assert paths(ok(client, "/photos", library="beta")) == [
        "beta:copy.mp4", "beta:dup/img1.jpg", "beta:dup2/img1.jpg",
    ]  # fmt: skip
    assert paths(ok(client, "/photos", media_kind="video")) == [
        "alpha:2024/clip.mp4", "beta:copy.mp4",
    ]  # fmt: skip
    assert paths(ok(client, "/photos", path_prefix="2024/")) == [
        "alpha:2024/clip.mp4", "alpha:2024/sub/x.png",
    ]  # fmt: skip
    unhashed = ok(client, "/photos", hashed="false")
    assert paths(unhashed) == ["alpha:2024/sub/x.png"]
    assert unhashed["items"][0]["content_hash"] is None
    assert len(ok(client, "/photos", hashed="true")["items"]) == 6
    combined = ok(client, "/photos", library="alpha", media_kind="image", hashed="true")
    assert paths(combined) == ["alpha:2023/img1.jpg", "alpha:2023/img2.jpg"]
    assert ok(client, "/photos", library="nope") == {"items": [], "next": None}


def test_library_filters_take_an_id_or_a_name(model: ReadModel, client: TestClient[Any]) -> None:
    """``library=`` is an id, or a library's name (case-insensitive exact; every library
    so named); an id wins over a name; unknown: nothing; blank: 400."""
    fam1, fam2, odd = seen("fam", "a.jpg"), seen("fam-2", "b.jpg"), seen("misc", "c.jpg")
    model.add(
        online("fam", "Family Photos"), online("fam-2", "family photos"), online("misc", "fam"),
        fam1, fam2, odd, hashed(fam1, h(1)), hashed(fam2, h(1)), hashed(odd, h(1)),
    ).publish()  # fmt: skip
    assert paths(ok(client, "/photos", library="FAMILY PHOTOS")) == ["fam:a.jpg", "fam-2:b.jpg"]
    assert paths(ok(client, "/photos", library="family photos")) == ["fam:a.jpg", "fam-2:b.jpg"]
    assert paths(ok(client, "/photos", library="fam")) == ["fam:a.jpg"]  # the id, not misc's name
    assert paths(ok(client, "/photos", library="Fam")) == ["misc:c.jpg"]  # no such id: a name
    assert paths(ok(client, "/photos", library="fam-2")) == ["fam-2:b.jpg"]
    assert paths(ok(client, "/photos", library="Family")) == []
    assert "library" in bad(client, "/photos", library=" ")
    (group,) = ok(client, "/duplicates", library="Family Photos")["items"]
    assert group["count"] == 2 and {loc["library"] for loc in group["locations"]} == {
        "fam", "fam-2",
    }  # fmt: skip
    assert ok(client, "/duplicates", library="Misc")["items"] == []  # one location only
    assert ok(client, "/duplicates", library="nobody")["items"] == []
    assert "library" in bad(client, "/duplicates", library=" ")


def test_photos_sorts(small: ReadModel, client: TestClient[Any]) -> None:
    by_path = paths(ok(client, "/photos", library="alpha"))
    assert paths(ok(client, "/photos", library="alpha", sort="-path")) == by_path[::-1]
    by_mtime = [A_IMG2, A_VID, A_IMG1, A_PNG]
    assert paths(ok(client, "/photos", library="alpha", sort="mtime")) == [
        f"alpha:{f.path}" for f in by_mtime
    ]
    assert paths(ok(client, "/photos", library="alpha", sort="-mtime")) == [
        f"alpha:{f.path}" for f in reversed(by_mtime)
    ]


@pytest.mark.parametrize("sort", ["path", "-path", "mtime", "-mtime"])
def test_cursor_paging_has_no_gaps_or_duplicates(
    model: ReadModel, client: TestClient[Any], sort: str
) -> None:
    # 250 files, mtimes repeating so the file_id tie-break matters, plus noise.
    files = [
        seen("big", f"d{i % 5}/f{i:03d}.jpg", mtime_s=1_700_000_000 + i % 7) for i in range(250)
    ]
    model.add(online("big"), *files, seen("other", "x.jpg")).publish()
    key = (lambda f: f.path) if sort.lstrip("-") == "path" else (lambda f: f.mtime_ns)
    expected = [
        f.file_id
        for f in sorted(files, key=lambda f: (key(f), f.file_id), reverse=sort.startswith("-"))
    ]
    got: list[str] = []
    sizes = []
    cursor = None
    while True:
        params: dict[str, Any] = {"library": "big", "sort": sort, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = ok(client, "/photos", **params)
        got += [i["file_id"] for i in page["items"]]
        sizes.append(len(page["items"]))
        cursor = page["next"]
        if cursor is None:
            break
    assert sizes == [100, 100, 50]
    assert got == expected
    # Without the library filter the other index serves the same order.
    page = ok(client, "/photos", sort=sort, limit=1000, media_kind="image")
    assert [i["file_id"] for i in page["items"] if i["library"] == "big"] == expected


def test_exact_last_page_has_no_next(model: ReadModel, client: TestClient[Any]) -> None:
    model.add(*(seen("lib", f"{i}.jpg") for i in range(4))).publish()
    page = ok(client, "/photos", limit=2)
    assert page["next"] is not None
    page = ok(client, "/photos", limit=2, cursor=page["next"])
    assert len(page["items"]) == 2 and page["next"] is None


def test_bad_parameters_are_400_naming_the_parameter(
    small: ReadModel, client: TestClient[Any]
) -> None:
    for limit in ("0", "1001", "ten"):
        assert "'limit'" in bad(client, "/photos", limit=limit)
    assert "'sort'" in bad(client, "/photos", sort="size")
    assert "'media_kind'" in bad(client, "/photos", media_kind="audio")
    assert "'hashed'" in bad(client, "/photos", hashed="maybe")
    for cursor in ("not-a-cursor!", base64.urlsafe_b64encode(b"[1, 2]").decode(), "é"):
        assert "'cursor'" in bad(client, "/photos", cursor=cursor)
    path_cursor = ok(client, "/photos", limit=1)["next"]
    assert "'cursor'" in bad(client, "/photos", limit=1, sort="mtime", cursor=path_cursor)
    forged = base64.urlsafe_b64encode(json.dumps({"s": "mtime", "k": "x", "id": "y"}).encode())
    assert "'cursor'" in bad(client, "/photos", sort="mtime", cursor=forged.decode())
    for wrong in ("abc", h(0xABC).upper(), h(1) + "0", "g" * 64, h(1) + "%0A"):
        assert "'content_hash'" in bad(client, f"/photos/{wrong}")
    assert "'kind'" in bad(client, "/duplicates", kind="fuzzy")
    assert "'limit'" in bad(client, "/duplicates", limit="0")
    assert "'cursor'" in bad(client, "/duplicates", cursor=path_cursor)


def test_photo_detail(small: ReadModel, client: TestClient[Any]) -> None:
    detail = ok(client, f"/photos/{h(1)}")
    locations = detail.pop("locations")
    assert detail == {
        "content_hash": h(1), "size": 1000, "media_kind": "image", "phash": PHASH_1,
        "dhash": DHASH_1, "width": 640, "height": 480, "decode_error": None, "exif": None,
        "thumbnails": {s: f"/photos/{h(1)}/thumbnail?size={s}" for s in ("small", "large")},
        "tags": [], "people": [],
    }  # fmt: skip
    assert [(loc["library"], loc["path"]) for loc in locations] == [
        ("alpha", "2023/img1.jpg"), ("beta", "dup/img1.jpg"), ("beta", "dup2/img1.jpg"),
    ]  # fmt: skip
    assert locations[1] == {
        "file_id": B_IMG1.file_id, "library": "beta", "path": "dup/img1.jpg", "size": 1000,
        "mtime_ns": B_IMG1.mtime_ns, "mtime": "2020-09-13T12:26:40+00:00",
        "date_taken": "2020-09-13T12:26:40Z", "date_source": "filesystem",
    }  # fmt: skip
    # An image the media deriver could not decode: its thumbnail says why.
    assert "truncated" in bad(client, f"/photos/{h(3)}/thumbnail", 404)
    # Content whose only location went missing is still known, with no locations.
    gone = ok(client, f"/photos/{h(4)}")
    assert gone["locations"] == [] and gone["size"] == A_GONE.size
    assert h(99) in bad(client, f"/photos/{h(99)}", 404)


# ------------------------------------------------------------------ duplicates


def test_duplicates_grouping_and_paging(small: ReadModel, client: TestClient[Any]) -> None:
    page = ok(client, "/duplicates")
    assert page["next"] is None
    video, image = page["items"]
    assert (video["content_hash"], video["count"], video["size"], video["wasted_bytes"]) == (
        h(2), 2, 5000, 5000,
    )  # fmt: skip
    assert [loc["file_id"] for loc in video["locations"]] == [A_VID.file_id, B_VID.file_id]
    assert (image["content_hash"], image["count"], image["wasted_bytes"]) == (h(1), 3, 2000)
    assert {loc["file_id"] for loc in image["locations"]} == {
        A_IMG1.file_id, B_IMG1.file_id, B_IMG1B.file_id,
    }  # fmt: skip
    first = ok(client, "/duplicates", kind="exact", limit=1)
    assert [g["content_hash"] for g in first["items"]] == [h(2)]
    second = ok(client, "/duplicates", limit=1, cursor=first["next"])
    assert [g["content_hash"] for g in second["items"]] == [h(1)] and second["next"] is None
    # Within one library only its own locations count.
    beta = ok(client, "/duplicates", library="beta")["items"]
    assert [(g["content_hash"], g["count"]) for g in beta] == [(h(1), 2)]
    assert ok(client, "/duplicates", library="alpha")["items"] == []


def test_duplicates_tie_on_wasted_bytes_orders_by_hash(
    model: ReadModel, client: TestClient[Any]
) -> None:
    events = []
    for n in (7, 5, 6):
        a, b = seen("lib", f"{n}a.jpg"), seen("lib", f"{n}b.jpg")
        events += [a, b, hashed(a, h(n)), hashed(b, h(n))]
    model.add(*events).publish()
    got, cursor = [], None
    for _ in range(3):
        page = ok(client, "/duplicates", limit=1, **({"cursor": cursor} if cursor else {}))
        got += [g["content_hash"] for g in page["items"]]
        cursor = page["next"]
    assert got == [h(5), h(6), h(7)] and cursor is None


# ------------------------------------------------------------------ generations


def test_generation_swap_is_visible_without_restart(
    model: ReadModel, client: TestClient[Any]
) -> None:
    model.add(seen("lib", "one.jpg"))
    gen1 = model.publish()
    assert paths(ok(client, "/photos")) == ["lib:one.jpg"]
    assert ok(client, "/pipeline")["projector"]["generation"] == gen1.name
    model.add(seen("lib", "two.jpg"))
    gen2 = model.publish()
    assert gen2 != gen1
    assert paths(ok(client, "/photos")) == ["lib:one.jpg", "lib:two.jpg"]
    assert ok(client, "/pipeline")["projector"] == {
        "generation": gen2.name, "checkpoint": 2, "lag": None,
    }  # fmt: skip


def test_pipeline_failures_from_read_model(small: ReadModel, client: TestClient[Any]) -> None:
    failures = ok(client, "/pipeline")["failures"]
    assert failures["total"] == 4
    assert failures["by_stage"] == {"hash": 2, "thumbs": 1, "media": 1}
    assert failures["by_operation"] == {"hash:hash": 2, "thumbs:thumbs": 1, "media:thumbnail": 1}
    recent = failures["recent"]
    assert [f["stage"] for f in recent] == ["thumbs", "hash", "hash", "media"]
    assert [f["operation"] for f in recent] == ["thumbs", "hash", "hash", "thumbnail"]
    assert recent[0]["reason"] == "boom 3" and recent[0]["permanent"] is True
    assert recent[0]["seq"] == len(small_events())


# ------------------------------------------------------------------ auth, schema


def test_token_auth(small: ReadModel, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"api_token": "s3cret"}))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/healthz").status_code == 200
        for url in ("/libraries", "/photos", f"/photos/{h(1)}", "/duplicates", "/pipeline",
                    "/schema/openapi.json"):  # fmt: skip
            r = c.get(url)
            assert r.status_code == 401, url
            assert "Authorization" in r.json()["detail"]
            assert r.headers["www-authenticate"] == "Bearer"
            wrong = c.get(url, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json() == {"detail": "invalid bearer token"}
            assert c.get(url, headers={"Authorization": "Basic s3cret"}).status_code == 401
            assert c.get(url, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_openapi_documents_every_response_field(client: TestClient[Any]) -> None:
    spec = ok(client, "/schema/openapi.json")
    assert {"/healthz", "/libraries", "/photos", "/photos/{content_hash}", "/duplicates",
            "/pipeline"} <= set(spec["paths"])  # fmt: skip
    schemas = spec["components"]["schemas"]
    for name in ("Photo", "PhotoPage", "PhotoDetail", "LibraryStatus", "DuplicateGroup",
                 "PipelineStatus", "StreamStatus", "ConsumerStatus", "Failure"):  # fmt: skip
        for field, prop in schemas[name]["properties"].items():
            assert prop.get("description"), f"{name}.{field} has no description"
    params = {p["name"] for p in spec["paths"]["/photos"]["get"]["parameters"]}
    assert params == {
        "library", "media_kind", "path_prefix", "hashed", "sort", "limit", "cursor",
        "taken_from", "taken_to", "make", "model", "lens", "bbox", "near", "radius_km",
        "has_gps", "orientation", "person", "tag", "tag_mode", "favorite",
    }  # fmt: skip


# ------------------------------------------------------------------ with NATS


async def test_pipeline_and_last_scan_with_nats(nats_url: str, settings: Settings) -> None:
    log = await EventLog.connect(nats_url)
    try:
        await log.ensure_stream()
        for ev in (online("alpha"), A_IMG1, A_IMG2):
            await log.publish(ev)
        await log.ensure_consumer(
            ConsumerSpec(durable="hasher", filter_subjects=("photos.file.*.FileSeen",))
        )
        await log.put_status(
            "scan.alpha",
            {"library_id": "alpha", "full": True, "started_at": "2024-05-01T12:00:00+00:00",
             "finished_at": "2024-05-01T12:00:01+00:00", "duration_s": 1.5, "files": 2,
             "new": 2, "changed": 0, "missing": 0, "error": None, "unknown_key": 1},
        )  # fmt: skip
        # Project what is in the stream, then one more event arrives: lag 1.
        path = readmodel.new_generation(settings.readmodel_dir)
        conn = readmodel.open_writer(path)
        async for batch in log.read():
            apply_batch(conn, batch)
        conn.close()
        readmodel.swap(settings.readmodel_dir, path)
        await log.publish(A_VID)

        app = create_app(
            settings.model_copy(update={"nats_url": nats_url}),
            extra_status=lambda: {"workers": 2},
        )
        async with AsyncTestClient(app, base_url="http://127.0.0.1") as c:
            r = await c.get("/pipeline")
            assert r.status_code == 200, r.text
            pipe = r.json()
            assert pipe["nats"].pop("since") <= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            assert pipe["nats"] == {"connected": True}
            stream = pipe["stream"]
            assert (stream["name"], stream["last_seq"], stream["messages"]) == ("PHOTOS", 4, 4)
            assert stream["bytes"] > 0 and "error" not in stream
            assert pipe["projector"] == {"generation": path.name, "checkpoint": 3, "lag": 1}
            assert pipe["consumers"] == [
                {"name": "hasher", "pending": 3, "ack_pending": 0, "redelivered": 0,
                 "last_delivered": 0},
            ]  # fmt: skip
            assert pipe["extra"] == {"workers": 2}

            libs = (await c.get("/libraries")).json()["items"]
            assert [lib["library_id"] for lib in libs] == ["alpha"]
            scan = libs[0]["last_scan"]
            assert scan["full"] is True and scan["files"] == 2 and scan["duration_s"] == 1.5
            assert "unknown_key" not in scan
        # The app closed only the connection it opened itself.
        assert log.nc.is_connected

        # A shared event log is used as given, and left open. (AsyncTestClient runs the
        # app on another loop; a connection made here must be used on this one.)
        async with serve_here(create_app(settings, event_log=log)) as c:
            pipe = (await c.get("/pipeline")).json()
            assert pipe["stream"]["last_seq"] == 4 and pipe["nats"]["connected"] is True
            assert set(pipe["nats"]) == {"connected", "since"}
            libs = (await c.get("/libraries")).json()["items"]
            assert libs[0]["last_scan"]["new"] == 2
        assert log.nc.is_connected
    finally:
        await log.close()


async def test_library_without_scan_status_bucket(nats_url: str, small: ReadModel,
                                                  settings: Settings) -> None:  # fmt: skip
    log = await EventLog.connect(nats_url)
    try:
        async with serve_here(create_app(settings, event_log=log)) as c:
            libs = (await c.get("/libraries")).json()["items"]
            assert [lib["last_scan"] for lib in libs] == [None, None]
            pipe = (await c.get("/pipeline")).json()
            assert "not found" in pipe["stream"]["error"].lower()
            assert pipe["projector"]["lag"] is None and pipe["consumers"] == []
    finally:
        await log.close()


async def test_unreachable_nats_is_reported_not_fatal(small: ReadModel, settings: Settings) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    app = create_app(settings.model_copy(update={"nats_url": url}), nats_connect_wait=0.2)
    async with AsyncTestClient(app, base_url="http://127.0.0.1") as c:
        pipe = (await c.get("/pipeline")).json()
        assert pipe["nats"]["connected"] is False and url in pipe["nats"]["error"]
        assert url in pipe["stream"]["error"]
        assert pipe["projector"]["checkpoint"] == len(small_events())
        assert len((await c.get("/photos")).json()["items"]) == 7


def test_unusable_read_model_is_503_with_detail(
    settings: Settings, client: TestClient[Any]
) -> None:
    settings.readmodel_dir.mkdir(parents=True)
    (settings.readmodel_dir / "CURRENT").write_text("not-a-generation")
    detail = bad(client, "/photos", 503)
    assert detail.startswith("read model unavailable") and "CURRENT" in detail
    assert ok(client, "/healthz") == {"status": "ok"}
