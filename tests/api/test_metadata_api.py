"""The metadata API: /photos filters and sort by date taken, photo detail, thumbnails,
originals with byte ranges. Read models are built from the events of real JPEGs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from eventsvc.core.events import DerivationFailed, FileMissing, ThumbnailReady
from eventsvc.core.settings import Settings
from projections.api.geo import haversine_km
from projections.api.sendfile import CHUNK
from projections.app import create_app

from .conftest import ReadModel, client_for, online, seen
from .http import bad, ok
from .shots import Shot, from_file, scene, shoot

EIFFEL = (48.8584, 2.2945)
VERSAILLES = (48.8049, 2.1204)


@dataclass
class Cam:
    """A library 'cam' of real JPEGs (and a few files known only by events)."""

    root: Path
    shots: dict[str, Shot]
    ids: dict[str, str]  # name -> file_id, for every file of the library

    def names(self, page: dict[str, Any]) -> list[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return [by_id[i["file_id"]] for i in page["items"]]


@pytest.fixture
def cam(tmp_path: Path, settings: Settings, model: ReadModel) -> Cam:
    root = tmp_path / "cam"
    thumbs = settings.thumbs_dir
    specs: dict[str, dict[str, Any]] = {
        "paris": dict(make="Canon", model="Canon EOS R5", lens="RF24-105mm F4 L IS USM",
                      orientation=6, taken="2023-05-01T10:00:00", gps=(*EIFFEL, 35.5)),
        "versailles": dict(make="Canon", model="Canon EOS 5D Mark IV", orientation=1,
                           taken="2023-05-01T23:59:59", gps=(*VERSAILLES, None)),
        "fiji_east": dict(make="NIKON CORPORATION", model="NIKON Z 6",
                          taken="2023-05-02T00:00:00", gps=(-17.0, 179.9, None)),
        "fiji_west": dict(make="Apple", model="iPhone 13", taken="2023-06-15T08:30:00",
                          gps=(-17.0, -179.9, 2.0)),
        "north": dict(make="Apple", model="iPhone 13 Pro", taken="2022-12-31T23:59:59",
                      gps=(89.95, 10.0, None)),
        "nogps": dict(make="Apple", model="iPhone 13", orientation=3,
                      taken="2023-05-01T12:30:45"),
    }  # fmt: skip
    shots: dict[str, Shot] = {}
    for n, (name, exif) in enumerate(specs.items()):
        img = scene(100 + n, (64, 48))
        shots[name] = shoot(root, "cam", f"{name}.jpg", img, thumbs_dir=thumbs, exif=exif)
    # No EXIF date: the file name's, then the file's mtime (2020-01-01T00:00:00Z).
    shots["named"] = shoot(root, "cam", "IMG_20210704_101500.jpg", scene(200, (32, 32)))
    shots["plain"] = shoot(root, "cam", "plain.jpg", scene(201, (32, 32)), mtime_s=1_577_836_800)
    # Known only as seen (not hashed): dated by its mtime.
    pending = seen("cam", "pending.jpg", mtime_s=1_600_000_000)
    events: list[Any] = [online("cam").model_copy(update={"root": str(root)})]
    for s in shots.values():
        events += s.events
    model.add(*events, pending).publish()
    ids = {name: s.seen.file_id for name, s in shots.items()}
    ids["pending"] = pending.file_id
    return Cam(root=root, shots=shots, ids=ids)


def listed(c: TestClient[Any], cam: Cam, **params: Any) -> set[str]:
    return set(cam.names(ok(c, "/photos", limit=1000, **params)))


# ------------------------------------------------------------------ items


def test_items_carry_metadata(cam: Cam, client: TestClient[Any]) -> None:
    items = {i["path"]: i for i in ok(client, "/photos")["items"]}
    paris = items["paris.jpg"]
    h = cam.shots["paris"].content_hash
    assert {k: paris[k] for k in ("date_taken", "date_source", "make", "model")} == {
        "date_taken": "2023-05-01T10:00:00", "date_source": "exif_original",
        "make": "Canon", "model": "Canon EOS R5",
    }  # fmt: skip
    assert (paris["width"], paris["height"]) == (48, 64)  # orientation 6: upright is portrait
    assert paris["gps"] == {"lat": pytest.approx(EIFFEL[0]), "lon": pytest.approx(EIFFEL[1]),
                            "alt": 35.5}  # fmt: skip
    assert paris["thumbnail"] == f"/photos/{h}/thumbnail?size=small"
    assert items["versailles.jpg"]["gps"]["alt"] is None
    named = items["IMG_20210704_101500.jpg"]
    assert (named["date_taken"], named["date_source"]) == ("2021-07-04T10:15:00", "filename")
    assert (named["make"], named["gps"], named["thumbnail"]) == (None, None, None)
    assert (named["width"], named["height"]) == (32, 32)  # from the EXIF-less metadata
    plain = items["plain.jpg"]
    assert (plain["date_taken"], plain["date_source"]) == ("2020-01-01T00:00:00Z", "filesystem")
    pending = items["pending.jpg"]
    assert pending["content_hash"] is None and pending["width"] is None
    assert pending["date_source"] == "filesystem"


def test_photo_detail_has_exif_dates_and_thumbnails(cam: Cam, client: TestClient[Any]) -> None:
    shot = cam.shots["paris"]
    h = shot.content_hash
    detail = ok(client, f"/photos/{h}")
    assert detail["thumbnails"] == {
        "small": f"/photos/{h}/thumbnail?size=small", "large": f"/photos/{h}/thumbnail?size=large",
    }  # fmt: skip
    exif = detail["exif"]
    assert exif["make"] == "Canon" and exif["lens"] == "RF24-105mm F4 L IS USM"
    assert (exif["width"], exif["height"], exif["orientation"]) == (64, 48, 6)
    assert exif["gps_lat"] == pytest.approx(EIFFEL[0]) and exif["gps_alt"] == 35.5
    assert exif["date_original"] == "2023-05-01T10:00:00"
    assert (exif["date_taken"], exif["date_source"]) == ("2023-05-01T10:00:00", "exif_original")
    assert exif["warnings"] == [] and exif["media_kind"] == "image"
    assert exif["iso"] is None and exif["video_codec"] is None
    [loc] = detail["locations"]
    assert (loc["date_taken"], loc["date_source"]) == ("2023-05-01T10:00:00", "exif_original")
    assert (detail["width"], detail["height"]) == (48, 64)
    named = ok(client, f"/photos/{cam.shots['named'].content_hash}")
    assert named["thumbnails"] == {} and named["exif"]["date_taken"] is None
    assert named["locations"][0]["date_source"] == "filename"


# ------------------------------------------------------------------ filters


def test_taken_filters(cam: Cam, client: TestClient[Any]) -> None:
    c = client
    may_first = {"paris", "versailles", "nogps"}
    assert listed(c, cam, taken_from="2023-05-01") == may_first | {"fiji_east", "fiji_west"}
    # A bare date for taken_to includes that whole day (23:59:59 too, not the next 00:00).
    assert listed(c, cam, taken_to="2023-05-01") == may_first | {
        "north", "named", "plain", "pending",
    }  # fmt: skip
    assert listed(c, cam, taken_from="2023-05-01", taken_to="2023-05-01") == may_first
    # A date-time includes the unit it names: the minute 12:30 holds 12:30:45.
    assert listed(c, cam, taken_from="2023-05-01T10:00:00", taken_to="2023-05-01T12:30") == {
        "paris", "nogps",
    }  # fmt: skip
    assert listed(c, cam, taken_from="2023-05-01T10:00:01", taken_to="2023-05-01 12:30:44") == set()
    assert listed(c, cam, taken_to="2023-05-01T10:00:00") >= {"paris"}
    assert "paris" not in listed(c, cam, taken_to="2023-05-01T09:59:59.999")
    assert listed(c, cam, taken_from="2023-05-01T23:59:59.000", taken_to="2023-05-02T00:00") == {
        "versailles", "fiji_east",
    }  # fmt: skip
    assert listed(c, cam, taken_from="2019-12-31T23", taken_to="2020-01-01T00") == {"plain"}
    for value in ("yesterday", "2023-02-30", "2023-05-01T10:00:00Z", "2023-05-01T10:00+02:00",
                  "2023-5-1", "2023-05-01T25:00"):  # fmt: skip
        assert "'taken_from'" in bad(c, "/photos", taken_from=value)
    assert "'taken_to'" in bad(c, "/photos", taken_to="2023-13-01")
    assert listed(c, cam, taken_from="2023-06-15T08:30", taken_to="9999-12-31") == {"fiji_west"}
    assert listed(c, cam, taken_to="0999-01-01T00:00:00.5") == set()
    detail = bad(c, "/photos", taken_from="2023-05-02", taken_to="2023-05-01")
    assert "'taken_to'" in detail and "before taken_from" in detail


def test_camera_filters(cam: Cam, client: TestClient[Any]) -> None:
    c = client
    assert listed(c, cam, make="canon") == {"paris", "versailles"}
    assert listed(c, cam, make="CANON", model="canon eos r5") == {"paris"}
    assert listed(c, cam, make="Can") == set()
    assert listed(c, cam, model="*EOS*") == {"paris", "versailles"}
    assert listed(c, cam, model="iPhone 13") == {"fiji_west", "nogps"}
    assert listed(c, cam, model="iphone 13*") == {"fiji_west", "nogps", "north"}
    assert listed(c, cam, model="iPhone_13") == set()  # '_' is literal, not a wildcard
    assert listed(c, cam, make="*on*") == {"paris", "versailles", "fiji_east"}
    assert listed(c, cam, lens="rf24-105mm f4 l is usm") == {"paris"}
    for name in ("make", "model", "lens"):
        assert f"'{name}'" in bad(c, "/photos", **{name: "**"})


def test_gps_orientation_filters(cam: Cam, client: TestClient[Any]) -> None:
    c = client
    with_gps = {"paris", "versailles", "fiji_east", "fiji_west", "north"}
    assert listed(c, cam, has_gps="true") == with_gps
    assert listed(c, cam, has_gps="false") == set(cam.ids) - with_gps
    assert listed(c, cam, orientation=6) == {"paris"}
    assert listed(c, cam, orientation=3) == {"nogps"}
    assert listed(c, cam, bbox="48,2,49,3") == {"paris", "versailles"}
    assert listed(c, cam, bbox="48.83,2,49,3") == {"paris"}
    # min_lon > max_lon: the box crosses the antimeridian.
    assert listed(c, cam, bbox="-18,179,-16,-179") == {"fiji_east", "fiji_west"}
    assert listed(c, cam, bbox="-18,179.95,-16,-179.95") == set()
    assert listed(c, cam, bbox="-18,-179,-16,179") == set()  # the long way round: no Fiji
    # near: exact great-circle distance after the box prefilter.
    apart = haversine_km(*EIFFEL, *VERSAILLES)
    assert apart is not None and 13 < apart < 15
    assert listed(c, cam, near="48.8584,2.2945", radius_km=1) == {"paris"}
    assert listed(c, cam, near="48.8584,2.2945", radius_km=apart - 0.05) == {"paris"}
    assert listed(c, cam, near="48.8584,2.2945", radius_km=apart + 0.05) == {
        "paris", "versailles",
    }  # fmt: skip
    assert listed(c, cam, near="-17,180", radius_km=12) == {"fiji_east", "fiji_west"}
    assert listed(c, cam, near="-17,-180", radius_km=12) == {"fiji_east", "fiji_west"}
    assert listed(c, cam, near="-17,179.9", radius_km=5) == {"fiji_east"}
    assert listed(c, cam, near="90,0", radius_km=6) == {"north"}  # the cap holds the pole
    assert listed(c, cam, near="0,0", radius_km=20015) == with_gps  # the whole globe
    combined = listed(c, cam, near="48.8584,2.2945", radius_km=50, model="*5D*")
    assert combined == {"versailles"}


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "a,b,c,d"}, "bbox"),
        ({"bbox": "91,0,92,1"}, "bbox"),
        ({"bbox": "10,0,5,1"}, "bbox"),
        ({"bbox": "0,181,1,182"}, "bbox"),
        ({"bbox": "0,nan,1,2"}, "bbox"),
        ({"near": "91,0", "radius_km": 1}, "near"),
        ({"near": "0,-181", "radius_km": 1}, "near"),
        ({"near": "1", "radius_km": 1}, "near"),
        ({"near": "1,2,3", "radius_km": 1}, "near"),
        ({"radius_km": 5}, "radius_km"),
        ({"near": "1,2"}, "radius_km"),
        ({"near": "1,2", "radius_km": 0}, "radius_km"),
        ({"near": "1,2", "radius_km": -3}, "radius_km"),
        ({"near": "1,2", "radius_km": 30000}, "radius_km"),
        ({"near": "1,2", "radius_km": "far"}, "radius_km"),
        ({"orientation": 0}, "orientation"),
        ({"orientation": 9}, "orientation"),
        ({"has_gps": "sometimes"}, "has_gps"),
        ({"sort": "date"}, "sort"),
    ],
)
def test_filter_400s_name_the_parameter(
    client: TestClient[Any], params: dict[str, Any], name: str
) -> None:
    assert f"'{name}'" in bad(client, "/photos", **params)


# ------------------------------------------------------------------ sort by date taken


def test_sort_by_taken(cam: Cam, client: TestClient[Any]) -> None:
    ascending = [
        "plain", "pending", "named", "north", "paris", "nogps", "versailles", "fiji_east",
        "fiji_west",
    ]  # fmt: skip
    assert cam.names(ok(client, "/photos", sort="taken")) == ascending
    assert cam.names(ok(client, "/photos", sort="-taken")) == ascending[::-1]
    assert cam.names(ok(client, "/photos", sort="taken", make="apple")) == [
        "north", "nogps", "fiji_west",
    ]  # fmt: skip


@pytest.mark.parametrize("sort", ["taken", "-taken"])
def test_taken_paging_has_no_gaps_or_duplicates(
    model: ReadModel, client: TestClient[Any], sort: str
) -> None:
    # Dates from mtimes that repeat (file_id breaks the ties). Every row has a date: the
    # projector falls back to the mtime, so a row without one is a state it never writes.
    files = [seen("big", f"f{i:03d}.jpg", mtime_s=1_700_000_000 + i % 6) for i in range(60)]
    model.add(online("big"), *files).publish()
    assert all(i["date_taken"] for i in ok(client, "/photos", limit=100)["items"])
    desc = sort.startswith("-")
    dated = sorted(files, key=lambda f: (f.mtime_ns, f.file_id))
    expected = [f.file_id for f in (dated[::-1] if desc else dated)]
    got: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"sort": sort, "limit": 8}
        if cursor:
            params["cursor"] = cursor
        page = ok(client, "/photos", **params)
        got += [i["file_id"] for i in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert got == expected
    other = "taken" if desc else "-taken"
    first = ok(client, "/photos", sort=sort, limit=3)["next"]
    assert "'cursor'" in bad(client, "/photos", sort=other, cursor=first)
    assert "'cursor'" in bad(client, "/photos", sort="path", cursor=first)


# ------------------------------------------------------------------ thumbnails


def test_thumbnail_served_with_cache_headers(
    cam: Cam, client: TestClient[Any], settings: Settings
) -> None:
    shot = cam.shots["paris"]
    url = f"/photos/{shot.content_hash}/thumbnail"
    for size in ("small", "large"):
        r = client.get(url, params={"size": size})
        assert r.status_code == 200, r.text
        assert r.content == (settings.thumbs_dir / shot.thumbs[size]).read_bytes()
        assert r.content[:3] == b"\xff\xd8\xff"
        assert r.headers["content-type"] == "image/jpeg"
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["accept-ranges"] == "bytes"
        assert int(r.headers["content-length"]) == len(r.content)
    r = client.get(url)  # small by default
    etag = r.headers["etag"]
    assert (
        etag.startswith('"')
        and r.content == (settings.thumbs_dir / shot.thumbs["small"]).read_bytes()
    )
    again_body = r.content
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    r = client.get(url, headers={"Range": "bytes=999999-"})
    assert r.status_code == 416 and r.headers["content-type"] == "application/json"
    r = client.get(url, headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.content == again_body[:10]
    assert "'size'" in bad(client, url, size="huge")
    assert "'content_hash'" in bad(client, "/photos/xyz/thumbnail")


def test_thumbnail_404s_say_why(
    cam: Cam, model: ReadModel, client: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    paris = cam.shots["paris"].content_hash
    unknown = "e" * 64
    assert "unknown content_hash" in bad(client, f"/photos/{unknown}/thumbnail", 404)
    pending = cam.shots["named"].content_hash  # hashed, no ThumbnailReady, no failure
    assert "pending" in bad(client, f"/photos/{pending}/thumbnail", 404)
    failed = cam.shots["plain"]
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"\xff\xd8\xff secret")
    (settings.thumbs_dir / "ln").mkdir(parents=True)
    os.symlink(secret, settings.thumbs_dir / "ln" / "link.jpg")
    escapee = shoot(cam.root, "cam", "escape.jpg", scene(300, (16, 16)))
    linked = shoot(cam.root, "cam", "linked.jpg", scene(301, (16, 16)))
    model.add(
        DerivationFailed(
            stage="media",
            operation="thumbnail",
            reason="cannot decode for thumbnails: truncated",
            input_subject="photos.content.x.HashComputed",
            content_hash=failed.content_hash,
        ),
        *escapee.events,
        ThumbnailReady(
            content_hash=escapee.content_hash,
            sizes={"small": "../../secret.jpg", "large": str(secret)},
        ),
        *linked.events,
        ThumbnailReady(content_hash=linked.content_hash, sizes={"small": "ln/link.jpg"}),
    ).publish()
    detail = bad(client, f"/photos/{failed.content_hash}/thumbnail", 404)
    assert "failed" in detail and "truncated" in detail
    for size in ("small", "large"):
        detail = bad(client, f"/photos/{escapee.content_hash}/thumbnail", 404, size=size)
        assert "outside" in detail
    assert "outside" in bad(client, f"/photos/{linked.content_hash}/thumbnail", 404)
    assert "no 'large' thumbnail" in bad(
        client, f"/photos/{linked.content_hash}/thumbnail", 404, size="large"
    )
    (settings.thumbs_dir / cam.shots["paris"].thumbs["small"]).unlink()
    assert "missing" in bad(client, f"/photos/{paris}/thumbnail", 404)


def test_thumbnail_behind_a_token_is_privately_cached(cam: Cam, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"api_token": "s3cret"}))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        url = f"/photos/{cam.shots['paris'].content_hash}/thumbnail"
        assert c.get(url).status_code == 401
        r = c.get(url, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200
        assert r.headers["cache-control"] == "private, max-age=31536000, immutable"


# ------------------------------------------------------------------ originals


def test_original_full_and_ranges(cam: Cam, settings: Settings) -> None:
    with client_for(settings, cam=cam.root) as client:
        shot = cam.shots["paris"]
        data = shot.path.read_bytes()
        size = len(data)
        url = f"/photos/{shot.content_hash}/original"
        r = client.get(url)
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-type"] == "image/jpeg"
        assert r.headers["content-disposition"] == 'inline; filename="paris.jpg"'
        assert r.headers["accept-ranges"] == "bytes"
        assert r.headers["content-length"] == str(size)
        assert r.headers["etag"] == f'"{shot.content_hash}"'
        assert "immutable" in r.headers["cache-control"]

        def ranged(spec: str, **headers: str) -> Any:
            return client.get(url, headers={"Range": spec, **headers})

        r = ranged("bytes=10-99")
        assert r.status_code == 206 and r.content == data[10:100]
        assert r.headers["content-range"] == f"bytes 10-99/{size}"
        assert r.headers["content-length"] == "90"
        r = ranged("bytes=100-")
        assert r.status_code == 206 and r.content == data[100:]
        r = ranged("bytes=-50")  # suffix: the last 50 bytes
        assert r.status_code == 206 and r.content == data[-50:]
        assert r.headers["content-range"] == f"bytes {size - 50}-{size - 1}/{size}"
        r = ranged("bytes=-999999")
        assert r.status_code == 206 and r.content == data
        r = ranged(f"bytes={size - 1}-{size + 1000}")  # clamped to the end
        assert r.status_code == 206 and r.content == data[-1:]
        for unsatisfiable in (f"bytes={size}-", f"bytes={size + 5}-{size + 9}", "bytes=-0"):
            r = ranged(unsatisfiable)
            assert r.status_code == 416, unsatisfiable
            assert r.headers["content-range"] == f"bytes */{size}"
            assert "not satisfiable" in r.json()["detail"]
            assert r.headers["content-type"] == "application/json"
        for ignored in ("bytes=0-1,5-6", "bytes=9-2", "items=0-1", "bytes=x-y"):
            r = ranged(ignored)
            assert r.status_code == 200 and r.content == data, ignored
        etag = f'"{shot.content_hash}"'
        assert ranged("bytes=0-3", **{"If-Range": etag}).content == data[:4]
        r = ranged("bytes=0-3", **{"If-Range": '"something-else"'})
        assert r.status_code == 200 and r.content == data
        r = client.get(url, headers={"If-None-Match": f'W/"x", {etag}'})
        assert r.status_code == 304 and r.content == b""


def test_original_streams_in_chunks(model: ReadModel, settings: Settings,
                                    tmp_path: Path) -> None:  # fmt: skip
    with client_for(settings, vids=tmp_path / "vids") as client:
        root = tmp_path / "vids"
        root.mkdir()
        data = os.urandom(CHUNK * 2 + 12345)
        (root / "clip.mp4").write_bytes(data)
        shot = from_file(root, "vids", "clip.mp4")
        model.add(online("vids").model_copy(update={"root": str(root)}), *shot.events).publish()
        url = f"/photos/{shot.content_hash}/original"
        r = client.get(url)
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-type"] == "video/mp4"
        r = client.get(url, headers={"Range": f"bytes={CHUNK - 10}-{2 * CHUNK + 9}"})
        assert r.status_code == 206 and r.content == data[CHUNK - 10 : 2 * CHUNK + 10]


def test_original_live_location_and_root_checks(
    model: ReadModel, settings: Settings, tmp_path: Path
) -> None:
    with client_for(settings, lib=tmp_path / "lib") as client:
        root = tmp_path / "lib"
        outside = tmp_path / "outside"
        outside.mkdir()
        a = shoot(root, "lib", "a/first.jpg", scene(400, (40, 30)))
        (outside / "secret.jpg").write_bytes(a.path.read_bytes())  # the same bytes, outside
        (root / "b").mkdir()
        (root / "b" / "second.jpg").write_bytes(a.path.read_bytes())
        b = from_file(root, "lib", "b/second.jpg")
        assert b.content_hash == a.content_hash
        # A symlink leading out of the root, a recorded path with '..', a symlink inside.
        os.symlink(outside / "secret.jpg", root / "evil.jpg")
        evil = from_file(root, "lib", "evil.jpg")
        dotdot = from_file(root, "lib", "../outside/secret.jpg")
        os.symlink(root / "a" / "first.jpg", root / "inner.jpg")
        inner = from_file(root, "lib", "inner.jpg")
        assert evil.content_hash == dotdot.content_hash == inner.content_hash == a.content_hash
        uni = shoot(root, "lib", "caf\u00e9 \u2615.jpg", scene(401, (8, 8)))
        lib = online("lib").model_copy(update={"root": str(root)})
        model.add(lib, *a.events, *b.events, *uni.events).publish()
        url = f"/photos/{a.content_hash}/original"
        r = client.get(url)
        assert r.status_code == 200 and r.content == a.path.read_bytes()
        assert r.headers["content-disposition"] == 'inline; filename="first.jpg"'
        # The first location changed since it was hashed: the next live one answers.
        st = a.path.stat()
        os.utime(a.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-disposition"].endswith('"second.jpg"')
        (root / "b" / "second.jpg").unlink()
        detail = bad(client, url, 404)
        assert "no live location" in detail and "changed since it was hashed" in detail
        assert "lib:b/second.jpg: cannot open it" in detail
        # Only locations outside the root are left: refused, though the bytes would match.
        model.events = [lib, *evil.events, *dotdot.events, *uni.events]
        model.publish()
        detail = bad(client, url, 404)
        assert detail.count("outside its library root") == 2, detail
        # A symlink that stays inside the root is fine.
        os.utime(a.path, ns=(st.st_atime_ns, st.st_mtime_ns))
        model.events = [lib, *inner.events, *uni.events]
        model.publish()
        assert client.get(url).content == a.path.read_bytes()
        # Non-ASCII names get an RFC 5987 filename* and an ASCII fallback.
        r = client.get(f"/photos/{uni.content_hash}/original")
        assert r.status_code == 200
        assert r.headers["content-disposition"] == (
            "inline; filename=\"caf_ _.jpg\"; filename*=UTF-8''caf%C3%A9%20%E2%98%95.jpg"
        )
        assert "unknown content_hash" in bad(client, f"/photos/{'d' * 64}/original", 404)
        model.events = [lib, *uni.events, FileMissing(library_id="lib", file_id=uni.seen.file_id,
                                                      path=uni.seen.path)]  # fmt: skip
        model.publish()
        assert bad(client, f"/photos/{uni.content_hash}/original", 404) == (
            f"no live location for {uni.content_hash}"
        )


# ------------------------------------------------------------------ schema


def test_openapi_documents_every_field_and_parameter(client: TestClient[Any]) -> None:
    spec = ok(client, "/schema/openapi.json")
    schemas = spec["components"]["schemas"]
    for name, schema in schemas.items():
        for field_name, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field_name} has no description"
    for name in ("Exif", "Gps", "NearDuplicatePage", "NearDuplicateGroup", "NearPair",
                 "NearDuplicateMember", "NotDuplicateAccepted"):  # fmt: skip
        assert name in schemas
    body = spec["paths"]["/duplicates/not-duplicate"]["post"]["requestBody"]["content"]
    assert {"a", "b", "undo"} == set(body["application/json"]["schema"]["properties"])
    assert {"make", "gps", "thumbnail", "date_taken"} <= set(schemas["Photo"]["properties"])
    assert {"exif", "thumbnails"} <= set(schemas["PhotoDetail"]["properties"])
    for path in ("/photos/{content_hash}/thumbnail", "/photos/{content_hash}/original",
                 "/duplicates/not-duplicate"):  # fmt: skip
        assert path in spec["paths"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                assert p.get("description"), f"{method} {path} {p['name']} has no description"
    original = spec["paths"]["/photos/{content_hash}/original"]["get"]["responses"]
    assert {"200", "206", "404", "416"} <= set(original)
